/**
 * The in-memory timing loop shared by the benches: warm the JIT up, then
 * run `fn` in batches for a fixed time and count.
 */

export interface ThroughputRow {
  name: string;
  perSecond: number;
  usPerOp: number;
}

export function measureThroughput(name: string, seconds: number, fn: () => unknown, batch = 50): ThroughputRow {
  for (let i = 0; i < 2000; i++) fn();
  let n = 0;
  const start = process.hrtime.bigint();
  const end = start + BigInt(Math.round(seconds * 1e9));
  let now = start;
  while (now < end) {
    for (let i = 0; i < batch; i++) fn();
    n += batch;
    now = process.hrtime.bigint();
  }
  const secs = Number(now - start) / 1e9;
  return { name, perSecond: Math.round(n / secs), usPerOp: Math.round((secs / n) * 1e7) / 10 };
}
