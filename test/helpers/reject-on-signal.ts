/**
 * Preloaded into the real daemon (`NODE_OPTIONS=--require …`) by the test
 * of its unhandled-rejection handler: on SIGUSR2 it rejects a promise that
 * nothing handles. No request makes a correct daemon do that (each one that
 * did was a bug, since fixed), so the test has to cause one from outside the
 * daemon's own code.
 */
process.on('SIGUSR2', () => {
  void Promise.reject(new Error('a rejection nothing handles (test)'));
});
