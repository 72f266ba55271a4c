/**
 * The runtime format the plugin on another node of the cluster is
 * configured for, asked over SSH the way Ganeti's master reaches its nodes.
 *
 * Ganeti's hook environment says nothing about the other nodes, and each
 * node's hook runs on its own, so a migrate/failover hook cannot compare the
 * source's and the target's formats by itself. The master can: Ganeti
 * requires that it reach every node as root over SSH (gnt-node add, gnt-cluster
 * command), checking host keys against the cluster's known_hosts under the
 * cluster's name. The master's run of the hook asks both nodes.
 */
import { execFile } from 'node:child_process';
import { hostname } from 'node:os';

/** Ganeti's cluster-wide known_hosts (host keys listed under the cluster's name). */
export const GANETI_KNOWN_HOSTS = '/var/lib/ganeti/known_hosts';

/** Whether `node` (as Ganeti names it, usually a FQDN) is this machine. */
export function isThisNode(node: string, here = hostname()): boolean {
  const short = (n: string): string => n.split('.')[0] ?? n;
  return node === here || (short(node) === short(here) && (!node.includes('.') || !here.includes('.')));
}

/** The argv that runs this very command on another node (installs are the same on every node). */
export function selfCommand(args: string[]): string[] {
  return [process.execPath, process.argv[1] ?? '', ...args];
}

/** Quotes one word for the remote shell. */
function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** What {@link peerFormat} found out. */
export type PeerFormat = { node: string; format: string } | { node: string; error: string };

/**
 * Asks `node` for the plugin's configured runtime format. Never throws: an
 * unreachable node answers `error`.
 */
export function peerFormat(node: string, cluster: string, timeoutMs = 15_000): Promise<PeerFormat> {
  const remote = selfCommand(['config', 'ganetiFormat']).map(shq).join(' ');
  const args = [
    '-oBatchMode=yes', '-oStrictHostKeyChecking=yes', '-oCheckHostIP=no', '-oConnectTimeout=10', '-oEscapeChar=none',
    `-oUserKnownHostsFile=${GANETI_KNOWN_HOSTS}`, `-oHostKeyAlias=${cluster}`, '-lroot', node, remote,
  ];
  return new Promise((resolve) => {
    execFile('ssh', args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) {
        resolve({ node, error: (stderr.trim().split('\n').pop() ?? '') || err.message });
        return;
      }
      const format = stdout.trim();
      resolve(/^2\.(9|10|16)$/.test(format) ? { node, format } : { node, error: `unexpected answer "${format.slice(0, 80)}"` });
    });
  });
}
