import { strict as assert } from 'node:assert';
import Ajv2020 from 'ajv/dist/2020';
import { GkdError } from '../../../plugin/errors';
import { runtimeIssues, validateRuntime } from '../../../plugin/runtime';
import type { RuntimeFormatId } from '../../../plugin/types';
import schema216 from '../../../schemas/runtime/2.16.schema.json';
import { readSample, sample210, sample216, sampleSerialized216, scsi216, tiny210, tiny29 } from '../../helpers/runtime-samples';

function invalid(value: unknown, format: RuntimeFormatId, expected: string): void {
  assert.throws(
    () => validateRuntime(value, format),
    (e: unknown) => {
      assert.ok(e instanceof GkdError);
      assert.equal(e.code, 'GKD_RUNTIME_INVALID');
      assert.ok(e.message.startsWith(`Cannot accept runtime file as ${format}: `), e.message);
      assert.ok(e.message.includes(expected), `${e.message}\n  lacks: ${expected}`);
      return true;
    },
  );
}

function mutate<T>(value: T, fn: (v: T) => void): T {
  const copy = structuredClone(value);
  fn(copy);
  return copy;
}

describe('validateRuntime()', () => {
  it("accepts Ganeti's own sample files (pretty-printed as shipped)", () => {
    validateRuntime(sample216(), '2.16');
    validateRuntime(sample210(), '2.10');
    validateRuntime(sampleSerialized216(), '2.16');
  });

  it("accepts Ganeti's serialized NIC and disk lists item by item", () => {
    const ajv = new Ajv2020({ strict: false });
    ajv.addSchema(schema216);
    const nic = ajv.getSchema('urn:ganeti-kvm-devices:schemas:runtime:2.16#/$defs/nic')!;
    const entry = ajv.getSchema('urn:ganeti-kvm-devices:schemas:runtime:2.16#/$defs/diskEntry')!;
    for (const n of readSample('serialized_nics.json') as unknown[]) assert.ok(nic(n), JSON.stringify(nic.errors));
    for (const d of readSample('serialized_disks.json') as unknown[]) assert.ok(entry(d), JSON.stringify(entry.errors));
  });

  it('accepts our own shapes: SCSI, IDE, ISA hvinfo, hvinfo {}, unknown extra fields', () => {
    validateRuntime(scsi216(), '2.16');
    validateRuntime(tiny210(), '2.10');
    validateRuntime(tiny29(), '2.9');
    const ide = mutate(scsi216(), (v) => {
      v[3][0][0].hvinfo = { driver: 'ide-hd', id: 'disk-9e7c85f6-b6e5-4243', bus: 'ide.0', unit: 1 };
      v[1][0].hvinfo = { driver: 'ne2k_isa', id: 'nic-003fc157-66a8-4e6d', bus: 'isa.0' };
      v[1][0].x_new = { nested: [1, 'two'] };
    });
    validateRuntime(ide, '2.16');
    validateRuntime(mutate(scsi216(), (v) => (v[1][0].hvinfo = {})), '2.16');
  });

  it('names the place and the rule for each kind of bad input', () => {
    invalid([[], []], '2.9', 'runtime: must not have fewer than 3 items');
    invalid([[], [], {}], '2.10', 'runtime: must not have fewer than 4 items');
    invalid(mutate(tiny29(), (v) => v[0].push(true as never)), '2.9', 'kvm_cmd[7]: must be string,number');
    invalid(mutate(tiny210(), (v) => ((v[1][0] as Record<string, unknown>).pci = '6')), '2.10', 'nics[0].pci: must be integer');
    invalid(mutate(tiny210(), (v) => (v[1][0].pci = 32)), '2.10', 'nics[0].pci: must be <= 31');
    invalid(mutate(tiny210(), (v) => delete v[3][0][0].uuid), '2.10', 'disks[0]: must have required property "uuid"');
    invalid(mutate(tiny210(), (v) => (v[3][0] as unknown[]).pop()), '2.10', 'disks[0]: must not have fewer than 3 items');
    invalid(mutate(tiny210(), (v) => ((v[3][0] as unknown[])[2] = 5)), '2.10', 'disks[0].uri: must be string,null');
    invalid(mutate(tiny210(), (v) => ((v[3][0] as unknown[])[1] = null)), '2.10', 'disks[0].link: must be string');
    invalid(mutate(tiny210(), (v) => (v[2] = [] as never)), '2.10', 'hvparams: must be object');
    invalid(mutate(scsi216(), (v) => delete (v[3][0][0].hvinfo as Record<string, unknown>).bus), '2.16', 'disks[0].hvinfo: must have required property "bus"');
    invalid(mutate(scsi216(), (v) => delete (v[3][0][0].hvinfo as Record<string, unknown>).lun), '2.16', 'disks[0].hvinfo: must have property "lun" when "channel" is present');
    invalid(mutate(scsi216(), (v) => ((v[3][0][0].hvinfo as Record<string, unknown>).addr = '0x3')), '2.16', 'disks[0].hvinfo.channel: must not be present here');
    invalid(mutate(scsi216(), (v) => ((v[1][0].hvinfo as Record<string, unknown>).addr = 12)), '2.16', 'nics[0].hvinfo.addr: must be string');
    invalid(mutate(scsi216(), (v) => ((v[1][0].hvinfo as Record<string, unknown>).addr = '12')), '2.16', 'nics[0].hvinfo.addr: must match pattern');
    invalid(mutate(scsi216(), (v) => ((v[1][0].hvinfo as Record<string, unknown>).netdev = 'x')), '2.16', 'nics[0].hvinfo: must not have property "netdev"');
    invalid(mutate(scsi216(), (v) => ((v[1][0].hvinfo as Record<string, unknown>).id = '9bad id')), '2.16', 'nics[0].hvinfo.id: must match pattern');
    invalid(mutate(scsi216(), (v) => delete v[1][0].hvinfo), '2.16', 'nics[0]: must have required property "hvinfo"');
    invalid(mutate(scsi216(), (v) => (v[1][0].pci = 3)), '2.16', 'nics[0].pci: must not be present here');
    invalid(mutate(tiny210(), (v) => (v[1][0].hvinfo = {})), '2.10', 'nics[0].hvinfo: must not be present here');
    invalid(mutate(tiny29(), (v) => (v[1][0].pci = 3)), '2.9', 'nics[0].pci: must not be present here');
  });

  it('lists every issue in data and at most three in the message', () => {
    const bad = mutate(tiny210(), (v) => {
      v[0].push(null as never, {} as never, [] as never, false as never);
    });
    const issues = runtimeIssues(bad, '2.10');
    assert.equal(issues.length, 4);
    assert.deepEqual(issues[0], { field: 'kvm_cmd[5]', pointer: '/0/5', message: 'must be string,number' });
    invalid(bad, '2.10', '(and 1 more)');
  });
});
