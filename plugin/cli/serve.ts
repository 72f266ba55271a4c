/**
 * `kvm-devices serve`: runs the daemon in the foreground until SIGTERM or
 * SIGINT, then shuts down gracefully (in-flight calls finish, the socket is
 * removed).
 */
import { parseArgs } from 'node:util';
import { loadConfig, type Config } from '../config';
import { SocketInUseError, startDaemon } from '../rpc';
import type { Command } from './commands';

/**
 * Exit status when another live daemon serves the socket: distinct, so the
 * systemd unit can list it in RestartPreventExitStatus (restarting cannot help).
 */
export const EXIT_SOCKET_IN_USE = 3;

const HELP = `usage: kvm-devices serve [--socket PATH] [--runtime-dir DIR] [--run-dir DIR]
                         [--accel kvm|tcg] [--launch] [--config FILE] [--log-level LEVEL]

Runs the JSON-RPC daemon on a Unix socket until SIGTERM/SIGINT.

  --socket PATH       socket to listen on (default /run/ganeti-kvm-devices/rpc.sock;
                      a per-user directory when not root)
  --runtime-dir DIR   where <instance>.runtime files live
                      (default /var/run/ganeti/kvm-hypervisor/conf)
  --run-dir DIR       node-local run dir for pid files, monitor and serial sockets
                      (default /var/run/ganeti/kvm-hypervisor)
  --accel kvm|tcg     accelerator for every argv the daemon builds
  --launch            instance.start and migration.accept start QEMU themselves
  --config FILE       JSON config file (default /etc/ganeti-kvm-devices/config.json
                      when present); GKD_* environment variables override it
  --log-level LEVEL   trace, debug, info, warn, error, fatal or silent

Exit status: 0 after a clean shutdown, 1 when the daemon cannot start, 2 usage
or configuration error, ${EXIT_SOCKET_IN_USE} when another daemon is serving the socket (the
systemd unit does not restart on 2 or ${EXIT_SOCKET_IN_USE}).
`;

export const serveCommand: Command = {
  summary: 'run the JSON-RPC daemon',
  async run(args) {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        options: {
          socket: { type: 'string' }, 'runtime-dir': { type: 'string' }, 'run-dir': { type: 'string' },
          accel: { type: 'string' }, launch: { type: 'boolean' }, config: { type: 'string' },
          'log-level': { type: 'string' }, help: { type: 'boolean', short: 'h' },
        },
      }));
    } catch (e) {
      process.stderr.write(`kvm-devices serve: ${(e as Error).message}\n\n${HELP}`);
      return 2;
    }
    if (values.help === true) {
      process.stdout.write(HELP);
      return 0;
    }
    let config: Config;
    try {
      config = loadConfig({
        ...(values.config === undefined ? {} : { file: values.config }),
        overrides: {
          socket: values.socket, runtimeDir: values['runtime-dir'], runDir: values['run-dir'],
          accel: values.accel as Config['accel'], logLevel: values['log-level'],
          ...(values.launch === true ? { launch: true } : {}),
        },
      });
    } catch (e) {
      process.stderr.write(`kvm-devices serve: ${(e as Error).message}\n`);
      return 2;
    }
    // The signal handlers come first: a stop asked for while the daemon starts (its socket may
    // already answer) is kept and done once it has started, instead of the signal's default action
    // killing it half set up. One listener per signal for the whole run: removing the last one
    // drops a signal Node has received but not yet emitted.
    let stop: ((signal: string) => void) | undefined;
    let early: string | undefined;
    const onTerm = (): void => (stop === undefined ? void (early ??= 'SIGTERM') : stop('SIGTERM'));
    const onInt = (): void => (stop === undefined ? void (early ??= 'SIGINT') : stop('SIGINT'));
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    let daemon;
    try {
      daemon = await startDaemon(config);
    } catch (e) {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.stderr.write(`kvm-devices serve: ${(e as Error).message}\n`);
      return e instanceof SocketInUseError ? EXIT_SOCKET_IN_USE : 1;
    }
    const { logger } = daemon;
    // Node ends the process on an unhandled rejection. Every call is answered through its own
    // promise chain, so one that escapes is a bug to log, not a reason to drop every other
    // client and every hotplug in flight.
    const onRejection = (err: unknown): void => logger.error({ err }, 'unhandled promise rejection');
    process.on('unhandledRejection', onRejection);
    return new Promise<number>((resolve) => {
      stop = (signal: string): void => {
        logger.info({ signal }, 'signal received');
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        process.off('unhandledRejection', onRejection);
        daemon.close().then(
          () => {
            logger.flush();
            resolve(0);
          },
          (err: unknown) => {
            logger.error({ err }, 'unclean shutdown');
            resolve(1);
          },
        );
      };
      if (early !== undefined) stop(early);
    });
  },
};
