/**
 * The shape of the build, checked on the import graph (scripts/import-graph.ts): the relay core
 * loads no payment code, the payment gate is a module of its own, and no production entry
 * loads the dev Lightning network.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importGraph, ROOT } from '../scripts/import-graph.ts';

const PAYMENT_CODE = [/^packages\/pricing\//, /^packages\/payment-gate\//, /^apps\/relay\/src\/paid(-management)?\.ts$/];
const DEV_LIGHTNING = /^packages\/lightning\/src\/dev\//;
const matching = (files: string[], patterns: RegExp[]) => files.filter((f) => patterns.some((p) => p.test(f)));

/** The relay's files that make up the core: all but its entry points' wiring. */
const ENTRY_WIRING = new Set(['main.ts', 'paid.ts', 'paid-management.ts']);
const coreFiles = readdirSync(join(ROOT, 'apps/relay/src'))
  .filter((f) => f.endsWith('.ts') && !ENTRY_WIRING.has(f))
  .map((f) => `apps/relay/src/${f}`);

describe('the relay core takes the payment gate as a hook and imports no payment code', () => {
  it.each(coreFiles)('%s reaches no payment code, dynamic imports included', (file) => {
    expect(matching(importGraph(file, { dynamic: true }).files, PAYMENT_CODE)).toEqual([]);
  });

  it('the core is what the package exports: @paidrelay/relay loads no payment code', () => {
    const { files } = importGraph('apps/relay/src/index.ts', { dynamic: true });
    expect(files).toContain('apps/relay/src/app.ts');
    expect(matching(files, PAYMENT_CODE)).toEqual([]);
  });

  it('the relay deployable loads the payment wiring only through a dynamic import (an open relay loads none)', () => {
    expect(matching(importGraph('apps/relay/src/main.ts').files, PAYMENT_CODE)).toEqual([]);
    const withDynamic = importGraph('apps/relay/src/main.ts', { dynamic: true }).files;
    expect(withDynamic).toContain('apps/relay/src/paid.ts');
    expect(withDynamic).toContain('packages/payment-gate/src/gate.ts');
  });

  it('the check sees payment code where it is: the paid wiring reaches the gate and the prices', () => {
    const files = importGraph('apps/relay/src/paid.ts').files;
    expect(files).toContain('packages/payment-gate/src/index.ts');
    expect(files).toContain('packages/pricing/src/gate.ts');
  });

  it('the payment gate module depends on no app (it can be read, and built, alone)', () => {
    const { files } = importGraph('packages/payment-gate/src/index.ts', { dynamic: true });
    expect(files.filter((f) => f.startsWith('apps/'))).toEqual([]);
  });
});

describe('apps are wired together in their own deployable', () => {
  it('the admission service does not import the relay', () => {
    for (const entry of ['apps/admission/src/main.ts', 'apps/admission/src/index.ts']) {
      expect(importGraph(entry, { dynamic: true }).files.filter((f) => f.startsWith('apps/relay/'))).toEqual([]);
    }
  });

  it('the all-in-one imports both', () => {
    const { files } = importGraph('apps/all-in-one/src/main.ts');
    expect(files).toContain('apps/relay/src/paid.ts');
    expect(files).toContain('apps/admission/src/app.ts');
  });
});

describe('production never loads the dev Lightning network', () => {
  it.each(['apps/relay/src/main.ts', 'apps/admission/src/main.ts', 'apps/all-in-one/src/main.ts', 'packages/lightning/src/index.ts'])(
    '%s reaches no dev network statically',
    (entry) => {
      expect(importGraph(entry).files.filter((f) => DEV_LIGHTNING.test(f))).toEqual([]);
    },
  );

  it('the admission service loads it only by a dynamic import (without NWC_URL, outside production)', () => {
    expect(importGraph('apps/admission/src/main.ts', { dynamic: true }).files).toContain('packages/lightning/src/dev/network.ts');
  });
});
