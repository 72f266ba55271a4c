import { strict as assert } from 'node:assert';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { incomingAddressProblem, migrationSocketProblem, migrationUriProblem } from '../../../plugin/rpc/methods/migration-uri';

describe('where a migration URI may make a root QEMU bind or connect', () => {
  const base = mkdtempSync(join(tmpdir(), 'gkd-migration-uri-'));
  const runDir = join(base, 'run');
  const runtimeDir = join(runDir, 'conf');
  for (const d of [runtimeDir, join(runDir, 'ctrl')]) mkdirSync(d, { recursive: true });
  writeFileSync(join(runDir, 'plain-file'), '');
  writeFileSync(join(base, 'outside'), '');
  symlinkSync(join(base, 'outside'), join(runDir, 'escape'));
  symlinkSync(base, join(runDir, 'escape-dir'));
  const config = { runDir, runtimeDir, qmpPattern: '{runDir}/ctrl/{name}.qmp' };

  const refusedSockets: Array<[string, RegExp]> = [
    ['/etc/passwd', /must lie under one of the run dir/],
    ['relative.sock', /must be an absolute path/],
    [`${runDir}/../outside`, /"\." or "\.\."/],
    [`${runDir}/./x.sock`, /"\." or "\.\."/],
    [`${runDir}/escape`, /leads through a symlink/],
    [`${runDir}/escape-dir/x.sock`, /leads through a symlink/],
    [`${runtimeDir}/victim.runtime`, /must not lie in/],
    [`${runDir}/ctrl/other.qmp`, /QMP socket/],
    [`${runDir}/ctrl/other.monitor`, /monitor and serial sockets/],
    ['/var/run/ganeti/kvm-hypervisor/ctrl/inst1.qmp', /run dir/],
    ['a\0b', /NUL/],
  ];
  for (const [path, why] of refusedSockets) {
    it(`refuses ${JSON.stringify(path)} for both directions`, async () => {
      assert.match((await migrationSocketProblem(path, config)) ?? 'accepted', why);
      assert.match((await incomingAddressProblem(`unix:${path}`, config)) ?? 'accepted', why);
      assert.match((await migrationUriProblem(`unix:${path}`, config)) ?? 'accepted', why);
    });
  }

  it('takes a socket path under the run dir, outside its control and runtime dirs', async () => {
    assert.equal(await incomingAddressProblem(`unix:${runDir}/mig.sock`, config), undefined);
    assert.equal(await migrationUriProblem(`unix:${runDir}/mig.sock`, config), undefined);
    assert.equal(await migrationUriProblem(`unix:${runDir}/node-b/run/mig.sock`, config), undefined);
  });

  it('refuses a QMP socket wherever qmpPattern puts it', async () => {
    const elsewhere = { ...config, qmpPattern: '{runDir}/qmp-{name}.sock' };
    assert.match((await migrationUriProblem(`unix:${runDir}/qmp-inst1.sock`, elsewhere)) ?? 'accepted', /QMP socket \(qmpPattern/);
    assert.equal(await migrationUriProblem(`unix:${runDir}/mig.sock`, elsewhere), undefined);
  });

  it('checks the whole rest of a unix: address as the path, commas included', async () => {
    assert.match((await migrationUriProblem(`unix:${runDir}/a,/../../etc/passwd`, config)) ?? 'accepted', /"\." or "\.\."/);
  });

  it('refuses an incoming path naming an existing file, directory or symlink, and binds again over a stale socket', async () => {
    assert.match((await incomingAddressProblem(`unix:${runDir}/plain-file`, config)) ?? 'accepted', /names an existing file, which QEMU would delete/);
    assert.match((await incomingAddressProblem(`unix:${runDir}/ctrl`, config)) ?? 'accepted', /monitor and serial sockets/);
    mkdirSync(join(runDir, 'a-dir'));
    assert.match((await incomingAddressProblem(`unix:${runDir}/a-dir`, config)) ?? 'accepted', /existing directory/);
    symlinkSync(join(runDir, 'plain-file'), join(runDir, 'inner-link'));
    assert.match((await incomingAddressProblem(`unix:${runDir}/inner-link`, config)) ?? 'accepted', /existing symlink/);
    // A socket (as one left by an earlier try) is no file QEMU would destroy: it may be bound again.
    const sock = join(runDir, 'earlier.sock');
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      assert.equal(await incomingAddressProblem(`unix:${sock}`, config), undefined);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('leaves the other incoming forms to the planner checks', async () => {
    for (const incoming of ['defer', 'tcp:0:4444', 'exec:true']) assert.equal(await incomingAddressProblem(incoming, config), undefined, incoming);
  });

  it('migration.start takes tcp: and unix: only', async () => {
    assert.equal(await migrationUriProblem('tcp:10.0.0.2:8102', config), undefined);
    assert.equal(await migrationUriProblem('tcp:[::1]:4444', config), undefined);
    assert.match((await migrationUriProblem('exec:touch /tmp/x', config)) ?? 'accepted', /exec: URI/);
    assert.match((await migrationUriProblem(' exec:true', config)) ?? 'accepted', /exec: URI/);
    for (const uri of ['file:/etc/passwd', 'fd:monitor-fd', 'rdma:10.0.0.2:4444', 'vsock:2:4444', '/run/x.sock', 'UNIX:/run/x']) {
      assert.match((await migrationUriProblem(uri, config)) ?? 'accepted', /must be "tcp:HOST:PORT" or "unix:\/PATH"/, uri);
    }
  });
});
