import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { isGkdError } from '../../../plugin/errors';
import { convertRuntime, isValidRuntime, parseRuntime, serializeRuntime } from '../../../plugin/runtime';
import type { RuntimeV2_16 } from '../../../plugin/types';
import { any216Arb, downgradable216Arb, isQ35Item, runtime210Arb, runtime29Arb } from '../../helpers/runtime-arbitraries';
import { counterUuid } from '../../helpers/runtime-samples';

/**
 * Independent restatement of the downgrade rule, per device: what 2.10 can
 * express exactly. `undefined` = expressible; otherwise what is wrong.
 */
function oracle(kind: 'disk' | 'nic', dev: Record<string, unknown>, hv: Record<string, unknown>): 'ok' | 'id' | 'lossy' {
  const h = dev.hvinfo as Record<string, unknown>;
  const keys = Object.keys(h).sort().join(',');
  if (keys === '') return 'ok';
  if (keys !== 'addr,bus,driver,id' || h.bus !== 'pci.0') return 'lossy';
  const slot = /^0x[0-9a-f]+$/.test(String(h.addr)) ? parseInt(String(h.addr).slice(2), 16) : NaN;
  if (!(slot < 32) || `0x${slot.toString(16)}` !== h.addr) return 'lossy';
  const type = (hv[`${kind}_type`] as string | undefined) ?? 'paravirtual';
  const driver = type === 'paravirtual' ? `virtio-${kind === 'disk' ? 'blk' : 'net'}-pci` : type;
  if (h.driver !== driver) return 'lossy';
  return h.id === `hot${kind}-${String(dev.uuid).split('-')[0]}-pci-${slot}` ? 'ok' : 'id';
}

function verdicts(f: RuntimeV2_16): Array<{ id: string; v: 'ok' | 'id' | 'lossy' }> {
  return [
    ...f[1].map((n) => ({ id: String((n.hvinfo as { id?: string }).id), v: oracle('nic', n, f[2]) })),
    ...f[3].map(([d]) => ({ id: String((d.hvinfo as { id?: string }).id), v: oracle('disk', d, f[2]) })),
  ];
}

/**
 * A q35 machine (a root port or a q35 machine type in kvm_cmd, or a q35
 * `machine_version`) is refused whatever the options, but only in a file
 * that is 2.16 by shape: a file without devices is a valid 2.10 file as it
 * is, so there is nothing to convert.
 */
const isQ35 = (f: RuntimeV2_16): boolean =>
  f[1].length + f[3].length > 0 &&
  (f[0].some((i) => typeof i === 'string' && isQ35Item(i)) || /^(q35|pc-q35)/.test(String(f[2].machine_version ?? '')));

describe('runtime round trips (fast-check)', () => {
  it('every generated file is valid for its format', () => {
    fc.assert(fc.property(runtime29Arb(false), (f) => isValidRuntime(f, '2.9')));
    fc.assert(fc.property(runtime210Arb, (f) => isValidRuntime(f, '2.10')));
    fc.assert(fc.property(any216Arb, (f) => isValidRuntime(f, '2.16')));
  });

  it('convertRuntime(): any 2.10 file upgraded to 2.16 then downgraded is deep-equal to it, and byte-identical when serialized', () => {
    fc.assert(
      fc.property(runtime210Arb, (f) => {
        const snapshot = structuredClone(f);
        const up = convertRuntime(f, '2.16');
        assert.deepStrictEqual(up.changes, []);
        const down = convertRuntime(up.value, '2.10');
        assert.deepStrictEqual(down.value, f);
        assert.deepStrictEqual(down.changes, []);
        assert.equal(serializeRuntime(down.value), serializeRuntime(f));
        assert.deepStrictEqual(f, snapshot, 'the input was mutated');
      }),
    );
  });

  it('convertRuntime(): any downgradable 2.16 file goes down and back up deep-equal (same hvinfo, same everything)', () => {
    fc.assert(
      fc.property(downgradable216Arb, (f) => {
        const down = convertRuntime(f, '2.10');
        assert.deepStrictEqual(down.changes, []);
        assert.deepStrictEqual(convertRuntime(down.value, '2.16').value, f);
      }),
    );
  });

  it('convertRuntime(): any 2.16 file either goes down losslessly or is refused naming exactly the devices 2.10 cannot express', () => {
    fc.assert(
      fc.property(any216Arb, (f) => {
        const bad = verdicts(f).filter((d) => d.v !== 'ok');
        try {
          const down = convertRuntime(f, '2.10');
          assert.equal(bad.length, 0, `accepted although ${JSON.stringify(bad)}`);
          assert.ok(!isQ35(f), 'accepted a q35 machine');
          assert.deepStrictEqual(convertRuntime(down.value, '2.16').value, f);
        } catch (e) {
          if (!isGkdError(e) || e.code !== 'GKD_RUNTIME_LOSSY') throw e;
          assert.ok(bad.length > 0 || isQ35(f), `refused a lossless file: ${e.message}`);
          const named = new Set((e.data!.problems as Array<{ device: string }>).map((p) => p.device));
          for (const d of bad) assert.ok(named.has(d.id), `"${d.id}" not named in: ${e.message}`);
          for (const d of bad) assert.ok(e.message.includes(`"${d.id}"`));
        }
      }),
    );
  });

  it('convertRuntime({allowIdChange}): only ids change, exactly those reported, and the result is stable', () => {
    fc.assert(
      fc.property(any216Arb, (f) => {
        fc.pre(!isQ35(f) && verdicts(f).every((d) => d.v !== 'lossy'));
        const down = convertRuntime(f, '2.10', { allowIdChange: true });
        const up = convertRuntime(down.value, '2.16').value;
        const renamed = new Set(down.changes.filter((c) => c.kind === 'renamed').map((c) => c.device));
        assert.equal(down.changes.length, renamed.size);
        const devs = (r: RuntimeV2_16) => [...r[1], ...r[3].map(([d]) => d)];
        devs(f).forEach((orig, i) => {
          const back = devs(up)[i];
          const { id: oldId, ...restOld } = orig.hvinfo as Record<string, unknown>;
          const { id: newId, ...restNew } = back.hvinfo as Record<string, unknown>;
          assert.deepStrictEqual(restNew, restOld);
          assert.equal(oldId !== newId, renamed.has(String(oldId)));
        });
        // Going down again from the renamed file is lossless.
        assert.deepStrictEqual(convertRuntime(up, '2.10').value, down.value);
      }),
    );
  });

  it('convertRuntime({force}): any 2.16 file of an i440fx machine goes down, every loss reported, the result valid', () => {
    fc.assert(
      fc.property(any216Arb, (f) => {
        fc.pre(!isQ35(f));
        const bad = verdicts(f).filter((d) => d.v !== 'ok');
        const down = convertRuntime(f, '2.10', { force: true });
        assert.ok(isValidRuntime(down.value, '2.10'));
        const reported = new Set(down.changes.map((c) => c.device));
        for (const d of bad) assert.ok(reported.has(d.id), `loss on "${d.id}" not reported`);
        assert.ok(down.changes.every((c) => bad.some((d) => d.id === c.device)), 'reported a change on a lossless device');
      }),
    );
  });

  it('convertRuntime(): any 2.9 file with NIC uuids goes up to 2.10 or 2.16 and back deep-equal', () => {
    fc.assert(
      fc.property(runtime29Arb(true), fc.constantFrom('2.10' as const, '2.16' as const), (f, to) => {
        const up = convertRuntime(f, to);
        assert.deepStrictEqual(up.changes, []);
        assert.deepStrictEqual(convertRuntime(up.value, '2.9').value, f);
      }),
    );
  });

  it('convertRuntime(): a 2.9 NIC without uuid gets exactly one generated uuid, reported, and nothing else changes', () => {
    fc.assert(
      fc.property(runtime29Arb(false), (f) => {
        const up = convertRuntime(f, '2.16', { uuid: counterUuid() });
        const missing = f[1].map((n, i) => (n.uuid === undefined ? i : -1)).filter((i) => i >= 0);
        assert.deepStrictEqual(up.changes.map((c) => c.field), missing.map((i) => `nics[${i}].uuid`));
        const back = convertRuntime(up.value, '2.9').value;
        back[1].forEach((n, i) => {
          if (missing.includes(i)) {
            const { uuid, ...rest } = n;
            assert.match(String(uuid), /^00000000-0000-4000-8000-/);
            assert.deepStrictEqual(rest, f[1][i]);
          } else assert.deepStrictEqual(n, f[1][i]);
        });
      }),
    );
  });

  it('serializeRuntime(): one line plus newline, parses back to the same value', () => {
    fc.assert(
      fc.property(fc.oneof(runtime210Arb, any216Arb), (f) => {
        const text = serializeRuntime(f);
        assert.ok(text.endsWith('\n'));
        assert.equal(text.indexOf('\n'), text.length - 1);
        assert.doesNotMatch(text, / \n$/);
        assert.ok(/^[\x20-\x7e]*\n$/.test(text), 'not pure printable ASCII');
        assert.deepStrictEqual(parseRuntime(text), JSON.parse(JSON.stringify(f)));
      }),
    );
  });
});
