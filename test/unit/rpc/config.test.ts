import { strict as assert } from 'node:assert';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT_DEFAULTS, defaultConfig, loadConfig, qmpSocketFor } from '../../../plugin/config';

describe('config', () => {
  it('defaultConfig() uses Ganeti paths for root and a per-user directory otherwise', () => {
    assert.equal(defaultConfig({}, 0).socket, '/run/ganeti-kvm-devices/rpc.sock');
    assert.equal(defaultConfig({}, 0).runtimeDir, '/var/run/ganeti/kvm-hypervisor/conf');
    const user = defaultConfig({ XDG_RUNTIME_DIR: '/run/user/1000' }, 1000);
    assert.equal(user.socket, '/run/user/1000/ganeti-kvm-devices/rpc.sock');
    assert.equal(user.runtimeDir, '/run/user/1000/ganeti-kvm-devices/conf');
    assert.match(defaultConfig({}, 1234).socket, /ganeti-kvm-devices-1234\/rpc\.sock$/);
    assert.equal(ROOT_DEFAULTS.socketMode, 0o660);
    assert.equal(ROOT_DEFAULTS.hookTimeoutMs, 60_000);
    assert.equal(loadConfig({ env: { GKD_HOOK_TIMEOUT_MS: '1500' } }).hookTimeoutMs, 1500);
  });

  it('loadConfig() layers file, then GKD_* environment, then command line', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-cfg-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ socket: '/f/s.sock', logLevel: 'debug', socketMode: '0640', socketGroup: 'ganeti', runDir: '/f/run' }));
    const cfg = loadConfig({ file, uid: 0, env: { GKD_SOCKET: '/e/s.sock', GKD_LAUNCH: '1', GKD_HOTPLUG_TIMEOUT_MS: '5000' }, overrides: { runDir: '/c/run', accel: 'tcg' } });
    assert.equal(cfg.socket, '/e/s.sock');
    assert.equal(cfg.logLevel, 'debug');
    assert.equal(cfg.socketMode, 0o640);
    assert.equal(cfg.socketGroup, 'ganeti');
    assert.equal(cfg.launch, true);
    assert.equal(cfg.hotplugTimeoutMs, 5000);
    assert.equal(cfg.runDir, '/c/run');
    assert.equal(cfg.accel, 'tcg');
    assert.equal(qmpSocketFor(cfg, 'inst1'), '/c/run/ctrl/inst1.qmp');
  });

  it('loadConfig() names the source and key of a bad value', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gkd-cfg-'));
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify({ sokcet: '/x' }));
    assert.throws(() => loadConfig({ file, env: {} }), /config file .*"sokcet" is not a known setting/);
    assert.throws(() => loadConfig({ env: { GKD_ACCEL: 'xen' } }), /GKD_ACCEL: "accel" must be "kvm" or "tcg"/);
    writeFileSync(file, '{not json');
    assert.throws(() => loadConfig({ file, env: {} }), /Cannot read config file/);
  });
});
