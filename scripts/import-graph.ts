/**
 * What a module loads: the workspace files reachable from an entry, following `import` and
 * `export ... from` (and, when asked, dynamic `import()`), read with the TypeScript compiler's
 * own pre-processor. Workspace packages (`@paidrelay/x`, `@paidrelay/x/sub`) are followed
 * through their package.json `exports`; anything else (node:, npm packages) is a leaf.
 *
 *   tsx scripts/import-graph.ts apps/relay/src/main.ts [--dynamic]   lists the files it loads
 *
 * test/import-graph.test.ts uses it to check that the relay core loads no payment code and
 * production loads no dev Lightning network.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** `@paidrelay/x[/sub]` → its source file, from every workspace package's `exports`. */
function workspaceExports(): Map<string, string> {
  const out = new Map<string, string>();
  for (const parent of ['apps', 'packages']) {
    for (const dir of readdirSync(join(ROOT, parent))) {
      const pj = join(ROOT, parent, dir, 'package.json');
      if (!existsSync(pj)) continue;
      const pkg = JSON.parse(readFileSync(pj, 'utf8')) as { name: string; exports?: Record<string, string> | string };
      const exports = typeof pkg.exports === 'string' ? { '.': pkg.exports } : (pkg.exports ?? {});
      for (const [sub, file] of Object.entries(exports))
        out.set(sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`, join(ROOT, parent, dir, file));
    }
  }
  return out;
}

export type ImportGraph = {
  /** Workspace files reached (relative to the repository root), the entry first. */
  files: string[];
  /** Every specifier seen, with the file that imports it (relative). */
  imports: { from: string; specifier: string }[];
};

/** The graph of `entry` (a path relative to the root). `dynamic`: follow `import()` too. */
export function importGraph(entry: string, { dynamic = false } = {}): ImportGraph {
  const exportsMap = workspaceExports();
  const seen = new Set<string>();
  const imports: ImportGraph['imports'] = [];
  const files: string[] = [];
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const rel = relative(ROOT, file);
    files.push(rel);
    for (const specifier of importsOf(file, dynamic)) {
      imports.push({ from: rel, specifier });
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier));
      else if (exportsMap.has(specifier)) visit(exportsMap.get(specifier)!);
    }
  };
  visit(resolve(ROOT, entry));
  return { files, imports };
}

/**
 * The specifiers a file loads at run time: `import` and `export ... from` declarations that are
 * not erased (`import type`, or only `type` names), and with `dynamic` the `import()` calls
 * whose argument is a string.
 */
function importsOf(file: string, dynamic: boolean): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: string[] = [];
  const erased = (clause: ts.ImportClause | undefined): boolean => {
    if (!clause) return false; // `import 'x'`: loaded for its effects
    if (clause.isTypeOnly) return true;
    const named = clause.namedBindings;
    return (
      !clause.name &&
      named !== undefined &&
      ts.isNamedImports(named) &&
      named.elements.length > 0 &&
      named.elements.every((e) => e.isTypeOnly)
    );
  };
  const walk = (node: ts.Node) => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      if (!erased(node.importClause)) out.push(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause;
      const typeOnly =
        node.isTypeOnly ||
        (named !== undefined && ts.isNamedExports(named) && named.elements.length > 0 && named.elements.every((e) => e.isTypeOnly));
      if (!typeOnly) out.push(node.moduleSpecifier.text);
    } else if (dynamic && ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) out.push(arg.text);
    }
    ts.forEachChild(node, walk);
  };
  walk(source);
  return out;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [entry, ...flags] = process.argv.slice(2);
  if (!entry) throw new Error('usage: tsx scripts/import-graph.ts <entry.ts> [--dynamic]');
  for (const f of importGraph(entry, { dynamic: flags.includes('--dynamic') }).files) process.stdout.write(`${f}\n`);
}
