import { strict as assert } from 'node:assert';
import { GkdError } from '../../../plugin/errors';
import { detectFormat } from '../../../plugin/runtime';
import { sample210, sample216, sampleSerialized216, scsi216, tiny210, tiny29 } from '../../helpers/runtime-samples';

function unknown(value: unknown, message: RegExp, field?: string): void {
  assert.throws(
    () => detectFormat(value),
    (e: unknown) => {
      assert.ok(e instanceof GkdError);
      assert.equal(e.code, 'GKD_RUNTIME_UNKNOWN_FORMAT');
      assert.match(e.message, /^Cannot detect runtime file format: /);
      assert.match(e.message, message);
      if (field !== undefined) assert.equal(e.field, field);
      return true;
    },
  );
}

describe('detectFormat()', () => {
  it('reads the version from the shape of Ganeti\'s samples and ours', () => {
    assert.equal(detectFormat(sample216()), '2.16');
    assert.equal(detectFormat(sampleSerialized216()), '2.16');
    assert.equal(detectFormat(sample210()), '2.10');
    assert.equal(detectFormat(tiny210()), '2.10');
    assert.equal(detectFormat(scsi216()), '2.16');
    assert.equal(detectFormat(tiny29()), '2.9');
  });

  it('calls a four-member file without devices or markers 2.10 (valid as 2.16 too)', () => {
    assert.equal(detectFormat([[], [], {}, []]), '2.10');
    assert.equal(detectFormat([[], [{ uuid: 'x' }], {}, []]), '2.10');
  });

  it('calls a file 2.16 as soon as one device has hvinfo, even {}', () => {
    assert.equal(detectFormat([[], [{ uuid: 'x', hvinfo: {} }], {}, []]), '2.16');
  });

  it('names what is wrong when nothing matches', () => {
    unknown({ kvm_cmd: [] }, /top-level value is an object, expected an array of 3 or 4 members/, 'runtime');
    unknown('x', /top-level value is a string/);
    unknown(null, /top-level value is null/);
    unknown([[], []], /has 2 members, expected 3 \(2\.9\) or 4 \(2\.10, 2\.16\)/);
    unknown([[], [], {}, [], []], /has 5 members/);
    unknown([[], 'nics', {}], /nics is a string, expected an array/, 'nics');
    unknown([[], [7], {}], /nics\[0\] is a number, expected an object/, 'nics[0]');
    unknown([[], [], {}, {}], /disks is an object, expected an array/, 'disks');
    unknown([[], [], {}, [['a', 'b', null]]], /disks\[0\] is not a \[disk, link, uri\] entry/, 'disks[0]');
  });

  it('refuses devices that mix the two eras', () => {
    unknown([[], [{ pci: 3, hvinfo: {} }], {}, []], /nics\[0\] has both "pci" and "hvinfo"/, 'nics[0]');
    unknown(
      [[], [{ pci: 3 }], {}, [[{ hvinfo: {} }, 'l', null]]],
      /devices mix "pci" \(nics\[0\], 2\.10\) and "hvinfo" \(disks\[0\], 2\.16\)/,
    );
    unknown([[], [{ hvinfo: {} }], {}], /3 members \(2\.9\) but nics\[0\] carry "pci" or "hvinfo"/);
  });
});
