/**
 * An accessibility scan of what a page shows now, with axe-core: the violations of serious or
 * critical impact, each as `rule: the first offending element` (empty when there are none).
 */
import { createRequire } from 'node:module';
import type { Page } from 'playwright-core';

const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

interface AxeResult {
  readonly violations: readonly {
    readonly id: string;
    readonly impact: string | null;
    readonly nodes: readonly { readonly target: readonly unknown[] }[];
  }[];
}

export async function seriousViolations(page: Page): Promise<string[]> {
  if (!(await page.evaluate(() => 'axe' in globalThis))) await page.addScriptTag({ path: axePath });
  const result = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<unknown> } }).axe;
    return axe.run();
  })) as AxeResult;
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${JSON.stringify(v.nodes[0]?.target ?? [])}`);
}
