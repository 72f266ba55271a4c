/**
 * A fingerprint of a directory tree (names, types, modes, owners, contents,
 * symlink targets), to prove an operation changed nothing on disk.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export function hashDir(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string, rel: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      h.update(`${rel}/${name}\0${st.mode}\0${st.uid}:${st.gid}\0`);
      if (st.isSymbolicLink()) h.update(`-> ${readlinkSync(p)}\0`);
      else if (st.isDirectory()) walk(p, `${rel}/${name}`);
      else if (st.isFile()) h.update(readFileSync(p)).update(`\0${st.mtimeMs}\0`);
    }
  };
  walk(dir, '');
  return h.digest('hex');
}
