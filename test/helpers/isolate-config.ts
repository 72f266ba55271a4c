/**
 * Loaded before every test file (.mocharc "require"): the tests' own
 * daemons, hooks and CLI runs read an empty config file instead of the
 * node's /etc/ganeti-kvm-devices/config.json, which the Ganeti suite's lab
 * writes and an operator's node may have. Tests that want the node's config
 * (the Ganeti suite, whose daemon and hooks run as Ganeti runs them) start
 * their processes with an environment of their own, without GKD_CONFIG.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const file = join(mkdtempSync(join(tmpdir(), 'gkd-test-config-')), 'config.json');
writeFileSync(file, '{}\n');
process.env.GKD_CONFIG = file;
