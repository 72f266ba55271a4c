import { strict as assert } from 'node:assert';
import { convertRuntime } from '../../../plugin/runtime';
import { upgrade2_10To2_16, upgrade2_9To2_10 } from '../../../plugin/runtime/format/upgrade';
import type { RuntimeV2_10 } from '../../../plugin/types';
import { NIC_UUID, counterUuid, sample210, sample216, tiny210, tiny29 } from '../../helpers/runtime-samples';

describe('upgrade2_9To2_10()', () => {
  it('adds an empty disks list and keeps kvm_cmd (with its -drive) and everything else', () => {
    const r = upgrade2_9To2_10(tiny29(), { uuid: counterUuid() });
    assert.deepStrictEqual(r.value, [...tiny29(), []]);
    assert.deepStrictEqual(r.changes, []);
  });

  it('gives a NIC without uuid a fresh one and reports it', () => {
    const f = tiny29();
    delete f[1][0].uuid;
    const r = upgrade2_9To2_10(f, { uuid: counterUuid() });
    assert.equal(r.value[1][0].uuid, '00000000-0000-4000-8000-000000000001');
    assert.deepStrictEqual(r.changes, [
      { kind: 'added', field: 'nics[0].uuid', device: 'nics[0]', detail: 'gave nics[0] the new uuid "00000000-0000-4000-8000-000000000001"' },
    ]);
    assert.equal(f[1][0].uuid, undefined, 'input mutated');
  });

  it('convertRuntime() without a uuid source refuses such a file with a TypeError', () => {
    const f = tiny29();
    delete f[1][0].uuid;
    assert.throws(() => convertRuntime(f, '2.10'), TypeError);
    assert.doesNotThrow(() => convertRuntime(tiny29(), '2.10'));
  });
});

describe('upgrade2_10To2_16()', () => {
  it("turns Ganeti 2.15's sample slots into hvinfo with the PCI-era ids, era drivers, hex addrs, pci.0", () => {
    const up = upgrade2_10To2_16(sample210()).value;
    assert.deepStrictEqual(up[1][0].hvinfo, { driver: 'virtio-net-pci', id: 'hotnic-003fc157-pci-6', addr: '0x6', bus: 'pci.0' });
    assert.deepStrictEqual(up[3][0][0].hvinfo, { driver: 'virtio-blk-pci', id: 'hotdisk-7c079136-pci-4', addr: '0x4', bus: 'pci.0' });
    assert.deepStrictEqual(up[3][1][0].hvinfo, { driver: 'virtio-blk-pci', id: 'hotdisk-9f5c5bd4-pci-5', addr: '0x5', bus: 'pci.0' });
    assert.equal(up[3][0][2], 'rbd://123451214123/');
    assert.equal(up[3][1][2], null);
  });

  it("puts hvinfo where pci was, so the result lines up with Ganeti's 2.16 sample key for key", () => {
    const up = upgrade2_10To2_16(sample210()).value;
    const ganeti = sample216();
    assert.deepStrictEqual(Object.keys(up[1][0]), Object.keys(ganeti[1][0]));
    assert.deepStrictEqual(Object.keys(up[3][0][0]), Object.keys(ganeti[3][0][0]));
    assert.deepStrictEqual(up[0], ganeti[0]);
    assert.deepStrictEqual(up[2], ganeti[2]);
  });

  it('takes the driver from the runtime\'s own disk_type / nic_type, default paravirtual', () => {
    const f = tiny210();
    f[2].nic_type = 'e1000';
    f[2].disk_type = 'ide';
    let up = upgrade2_10To2_16(f).value;
    assert.equal((up[1][0].hvinfo as { driver: string }).driver, 'e1000');
    assert.equal((up[3][0][0].hvinfo as { driver: string }).driver, 'ide');
    delete f[2].nic_type;
    delete f[2].disk_type;
    up = upgrade2_10To2_16(f).value;
    assert.equal((up[1][0].hvinfo as { driver: string }).driver, 'virtio-net-pci');
    assert.equal((up[3][0][0].hvinfo as { driver: string }).driver, 'virtio-blk-pci');
  });

  it('writes slot 31 as 0x1f and slot 0 as 0x0, like Python hex()', () => {
    const f = tiny210();
    f[1][0].pci = 31;
    f[3][0][0].pci = 0;
    const up = upgrade2_10To2_16(f).value;
    assert.equal((up[1][0].hvinfo as { addr: string }).addr, '0x1f');
    assert.equal((up[3][0][0].hvinfo as { addr: string }).addr, '0x0');
    assert.equal((up[1][0].hvinfo as { id: string }).id, 'hotnic-003fc157-pci-31');
  });

  it('gives devices without a slot hvinfo {}, as Ganeti does', () => {
    const f = tiny210();
    delete f[1][0].pci;
    assert.deepStrictEqual(upgrade2_10To2_16(f).value[1][0].hvinfo, {});
  });

  it('keeps unknown fields, including a "__proto__" key, as plain data', () => {
    const f = JSON.parse(
      `[[], [{"uuid": "${NIC_UUID}", "__proto__": {"polluted": 1}, "pci": 7, "x": [1]}], {"zz": {"a": null}}, []]`,
    ) as RuntimeV2_10;
    const up = convertRuntime(f, '2.16').value;
    const nic = up[1][0];
    assert.ok(Object.prototype.hasOwnProperty.call(nic, '__proto__'));
    assert.deepStrictEqual(Object.getOwnPropertyDescriptor(nic, '__proto__')?.value, { polluted: 1 });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.deepStrictEqual(nic.x, [1]);
    assert.deepStrictEqual(up[2], { zz: { a: null } });
    assert.deepStrictEqual(convertRuntime(up, '2.10').value, f);
  });

  it('does not mutate its input', () => {
    const f = sample210();
    const copy = structuredClone(f);
    upgrade2_10To2_16(f);
    assert.deepStrictEqual(f, copy);
  });

  it('convertRuntime() chains 2.9 → 2.16 and returns the value itself when already there', () => {
    const r = convertRuntime(tiny29(), '2.16');
    assert.equal(r.from, '2.9');
    assert.deepStrictEqual(r.value[3], []);
    assert.deepStrictEqual(r.value[1][0].hvinfo, {});
    const same = sample216();
    assert.equal(convertRuntime(same, '2.16').value, same);
  });
});
