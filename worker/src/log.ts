/**
 * One JSON line per event on the Worker's console, which Workers Logs keeps
 * (`observability` in wrangler.jsonc). Callers pass ids and messages, never secrets.
 */
export function log(component: string, fields: Record<string, unknown>): void {
  // eslint-disable-next-line no-console -- the console is the Workers runtime's log sink
  console.log(JSON.stringify({ component, ...fields }));
}

export const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));
