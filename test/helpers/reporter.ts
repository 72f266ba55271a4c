/**
 * Mocha's spec reporter plus one closing line in the form `N passed, N failed`
 * (with `, N skipped` when any were), so a run that executed no test is
 * visible to anything reading the log.
 */
import Mocha = require('mocha');

class SummaryReporter extends Mocha.reporters.Spec {
  constructor(runner: Mocha.Runner, options?: Mocha.MochaOptions) {
    super(runner, options);
    runner.once('end', () => {
      const s = runner.stats ?? { passes: 0, failures: 0, pending: 0 };
      const skipped = s.pending > 0 ? `, ${s.pending} skipped` : '';
      process.stdout.write(`\n${s.passes} passed, ${s.failures} failed${skipped}\n`);
    });
  }
}

export = SummaryReporter;
