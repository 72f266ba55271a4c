import { strict as assert } from 'node:assert';
import { HookEnvError, specFromHookEnv } from '../../../plugin/cli/hook-env';
import { parseInstanceSpec, planInstance } from '../../../plugin/planner';
import { GANETI_ADD_ENV, GANETI_ENV } from '../../integration/rpc/ganeti-env';

describe('specFromHookEnv()', () => {
  it('reads disks, NICs, beparams and typed hvparams from the Ganeti hook environment', () => {
    const spec = specFromHookEnv(GANETI_ENV);
    assert.equal(spec.name, 'inst1.example.com');
    assert.deepEqual(spec.disks.map((d) => [d.uuid, d.path, d.size, d.mode]), [
      ['9e7c85f6-b6e5-4243-b27d-680b78c6d203', '/var/run/ganeti/instance-disks/inst1.example.com:0', 1024, 'rw'],
      ['5a1d3c11-0b7e-4a59-8f3e-2c4d6e8f0a12', '/var/run/ganeti/instance-disks/inst1.example.com:1', 2048, 'ro'],
    ]);
    assert.deepEqual(spec.nics[0], {
      uuid: '003fc157-66a8-4e6d-8b7e-ec4f69751396', mac: 'aa:00:00:bf:2f:16',
      nicparams: { mode: 'bridged', link: 'br0' }, ip: null,
    });
    assert.equal(spec.hvparams?.kvm_pci_reservations, 12);
    assert.equal(spec.hvparams?.vhost_net, false);
    assert.equal(spec.hvparams?.disk_type, 'scsi-hd');
    // Unknown to the planner: passed through untouched, as a string.
    assert.equal(spec.hvparams?.serial_speed, '38400');
    assert.deepEqual(spec.beparams, { maxmem: 256, minmem: 256, vcpus: 1, auto_balance: true, always_failover: false, spindle_use: 1 });
    parseInstanceSpec(spec);
  });

  it('names the variable that is missing or malformed', () => {
    const env = { ...GANETI_ENV };
    delete env.GANETI_INSTANCE_DISK1_UUID;
    assert.throws(() => specFromHookEnv(env), (e: HookEnvError) => e.variable === 'GANETI_INSTANCE_DISK1_UUID');
    assert.throws(() => specFromHookEnv({ ...GANETI_ENV, GANETI_INSTANCE_NIC_COUNT: 'x' }), /GANETI_INSTANCE_NIC_COUNT="x"/);
  });

  it('gives the disks of an instance-add (DISK<n>_UUID exported empty) distinct placeholder UUIDs that plan', () => {
    assert.throws(() => specFromHookEnv(GANETI_ADD_ENV), (e: HookEnvError) => e.variable === 'GANETI_INSTANCE_DISK0_UUID');
    const spec = specFromHookEnv(GANETI_ADD_ENV, { placeholderUuids: true });
    const [a, b] = spec.disks.map((d) => d.uuid);
    assert.notEqual(a, b);
    assert.deepEqual(specFromHookEnv(GANETI_ADD_ENV, { placeholderUuids: true }).disks.map((d) => d.uuid), [a, b], 'deterministic');
    assert.deepEqual(spec.disks.map((d) => [d.size, d.mode]), [[1024, 'rw'], [2048, 'ro']]);
    // A UUID Ganeti does export is kept.
    assert.equal(spec.nics[0]?.uuid, '003fc157-66a8-4e6d-8b7e-ec4f69751396');
    const plan = planInstance(parseInstanceSpec(spec));
    assert.equal(new Set(plan.devices.map((d) => d.id)).size, 3);
    const nicless = specFromHookEnv({ ...GANETI_ADD_ENV, GANETI_INSTANCE_NIC0_UUID: '' }, { placeholderUuids: true });
    planInstance(parseInstanceSpec(nicless));
  });
});
