/**
 * The Ganeti suite's closing list: every Ganeti command its tests ran (with
 * exit code and time), every hvinfo comparison with Ganeti's own runtime
 * file, and the suite's wall time from the lab's set-up to its last Ganeti
 * command. A root-level hook, so it runs once, after every file.
 */
import { ganetiCommands, hvinfoComparisons, SKIP_GANETI, suiteClock } from './helpers/lab';

after(function () {
  if (SKIP_GANETI || suiteClock.start === undefined) return;
  const minutes = ((suiteClock.last ?? performance.now()) - suiteClock.start) / 60_000;
  const out = [
    '',
    `  Ganeti suite: ${ganetiCommands.length} Ganeti commands, ${hvinfoComparisons.length} hvinfo comparisons, ${minutes.toFixed(1)} min from the lab's set-up to the last command`,
    '  Ganeti commands run:',
    ...ganetiCommands.map((c) => `    ${c}`),
    '  hvinfo compared with Ganeti 3.0\'s runtime file:',
    ...hvinfoComparisons.map((c) => `    ${c}`),
    '',
  ];
  process.stdout.write(`${out.join('\n')}\n`);
});
