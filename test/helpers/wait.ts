/**
 * What a timed-out wait appends to its error: the state of the processes a
 * test is running (their last lines, each device's published state), so a
 * failure that cannot be reproduced at will still says where things stood.
 */
const explainers = new Set<() => string>();

/** Adds what a timed-out wait explains until the returned function is called. */
export function explainTimeouts(explain: () => string): () => void {
  explainers.add(explain);
  return () => explainers.delete(explain);
}

function explanation(): string {
  const parts: string[] = [];
  for (const explain of explainers) {
    try {
      parts.push(explain());
    } catch (err) {
      parts.push(`(could not explain: ${String(err)})`);
    }
  }
  return parts.filter((p) => p !== '').map((p) => `\n${p}`).join('');
}

/** Waits until `check` returns a truthy value, polling; fails with `what` after the deadline. */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 25): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}${explanation()}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
