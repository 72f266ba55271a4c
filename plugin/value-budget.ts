/**
 * Depth and size budgets for values the daemon accepts from outside (RPC
 * params, runtime files, the hook environment).
 *
 * JSON.parse builds arbitrarily deep values without trouble, but every
 * recursive walk afterwards (JSON.stringify of a reply that echoes a field,
 * structuredClone, schema validation, the runtime encoder) overflows the
 * stack at a few thousand levels, and a stack overflow inside a promise
 * callback ends the process. So every value is measured here first, by an
 * explicit stack (never recursion), and refused naming the first place that
 * breaks the budget. Real values are shallow: an instance spec or a runtime
 * file is at most six levels deep.
 */

/** Budget for one value. */
export interface ValueBudget {
  /** Deepest nesting of arrays and objects (the value itself is depth 0). */
  maxDepth: number;
  /** Most arrays, objects and scalars in the whole value. */
  maxNodes: number;
  /** Longest string (object keys included), in UTF-16 code units. */
  maxString: number;
}

/** The default budget: far above any real instance spec or runtime file, far below a stack overflow. */
export const DEFAULT_BUDGET: ValueBudget = {
  maxDepth: 32,
  maxNodes: 200_000,
  maxString: 1024 * 1024,
};

/** Where and why a value breaks its budget. */
export interface BudgetViolation {
  /** JSON Pointer (RFC 6901) from the value's root to the offending node. */
  path: string;
  message: string;
}

function escapePointer(s: string): string {
  return s.replaceAll('~', '~0').replaceAll('/', '~1');
}

/**
 * The first place `value` breaks `budget`, or undefined when it fits.
 * Iterative: safe on any depth. Pointers are built only for the violation,
 * from the parent chain, so a conforming value costs one visit per node.
 */
export function checkBudget(value: unknown, budget: ValueBudget = DEFAULT_BUDGET): BudgetViolation | undefined {
  interface Frame { v: unknown; depth: number; key: string | undefined; parent: Frame | undefined }
  const pointer = (f: Frame | undefined): string => {
    const parts: string[] = [];
    for (let x = f; x !== undefined && x.key !== undefined; x = x.parent) parts.push(escapePointer(x.key));
    return parts.length === 0 ? '' : `/${parts.reverse().join('/')}`;
  };
  const stack: Frame[] = [{ v: value, depth: 0, key: undefined, parent: undefined }];
  // Counted when a container's children are pushed, so a huge array is refused before its elements take stack space.
  let nodes = 1;
  const tooMany = (f: Frame): BudgetViolation => ({ path: pointer(f), message: `makes the value hold more than ${budget.maxNodes} elements` });
  while (stack.length > 0) {
    const f = stack.pop() as Frame;
    const v = f.v;
    if (typeof v === 'string') {
      if (v.length > budget.maxString) return { path: pointer(f), message: `is ${v.length} characters long, over the limit of ${budget.maxString}` };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (f.depth >= budget.maxDepth) {
      return { path: pointer(f), message: `is nested deeper than ${budget.maxDepth} levels` };
    }
    if (Array.isArray(v)) {
      if ((nodes += v.length) > budget.maxNodes) return tooMany(f);
      for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], depth: f.depth + 1, key: String(i), parent: f });
    } else {
      const keys = Object.keys(v);
      if ((nodes += keys.length) > budget.maxNodes) return tooMany(f);
      for (let i = keys.length - 1; i >= 0; i--) {
        const k = keys[i];
        if (k.length > budget.maxString) return { path: pointer(f), message: `has a key ${k.length} characters long, over the limit of ${budget.maxString}` };
        stack.push({ v: (v as Record<string, unknown>)[k], depth: f.depth + 1, key: k, parent: f });
      }
    }
  }
  return undefined;
}

/** `/disks/3/uuid` → `disks[3].uuid` (the dotted form GkdError fields use). */
export function pointerToDotted(pointer: string, prefix = ''): string {
  let out = prefix;
  for (const raw of pointer.split('/').slice(1)) {
    const p = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    out = /^\d+$/.test(p) ? `${out}[${p}]` : out === '' ? p : `${out}.${p}`;
  }
  return out;
}
