#!/usr/bin/env node
// Checks every publishable package (each packages/*/package.json that is not `private`) the way
// npm will see it: packs it with `pnpm pack` (as `changeset publish` does, so `workspace:`
// ranges are replaced and the workspace's LICENSE is added), then runs on the tarball
//   - publint --strict: the manifest, `exports`, `files` and the packed files agree;
//   - attw --profile esm-only (@arethetypeswrong/cli): the types resolve for every ESM
//     consumer (node16 from ESM, bundler). The packages are ESM-only (`"type": "module"`, no
//     `require` condition), so the profile ignores the two CommonJS resolutions (node10,
//     node16 from CJS), which would only report "ESM, dynamic import only" by design;
//   - the tarball holds the MIT LICENSE.
// Needs `pnpm build` first (tarballs hold `dist`). Prints one line per package and check, and
// exits 1 if any failed. `node scripts/check-packages.mjs packages/engine` checks one folder.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = (name) => join(root, 'node_modules', '.bin', name);

const wanted = process.argv.slice(2).map((dir) => resolve(dir));
const dirs =
  wanted.length > 0
    ? wanted
    : readdirSync(join(root, 'packages'))
        .map((name) => join(root, 'packages', name))
        .filter((dir) => existsSync(join(dir, 'package.json')));

const work = mkdtempSync(join(tmpdir(), 'aiida-check-packages-'));
const failures = [];
try {
  for (const dir of dirs) {
    const manifestPath = join(dir, 'package.json');
    if (!existsSync(manifestPath)) {
      failures.push(`${dir}: no package.json`);
      console.error(`FAIL ${dir}: no package.json`);
      continue;
    }
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (manifest.private) {
      console.log(`skip ${manifest.name} (private, not published)`);
      continue;
    }
    check(manifest.name, dir);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (failures.length > 0) {
  console.error(`\n${failures.length} package check(s) failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log('\nevery publishable package passed publint, attw (esm-only) and the LICENSE check');

function check(name, dir) {
  const fail = (what, output) => {
    failures.push(`${name}: ${what}`);
    console.error(`FAIL ${name}: ${what}`);
    if (output) console.error(indent(output));
  };
  if (!existsSync(join(dir, 'dist'))) {
    fail(`${dir}/dist is missing: run \`pnpm build\` first`);
    return;
  }
  const destination = mkdtempSync(join(work, 'pack-'));
  const pack = run('pnpm', ['pack', '--pack-destination', destination], dir);
  const tarball = readdirSync(destination).find((file) => file.endsWith('.tgz'));
  if (pack.status !== 0 || !tarball) {
    fail('pnpm pack failed', pack.output);
    return;
  }
  const file = join(destination, tarball);

  const publint = run(bin('publint'), ['run', file, '--strict'], dir);
  if (publint.status === 0) console.log(`ok   ${name}: publint`);
  else fail('publint reported problems', publint.output);

  const attw = run(
    bin('attw'),
    [file, '--profile', 'esm-only', '--format', 'table-flipped', '--no-color', '--no-emoji'],
    dir,
  );
  if (attw.status === 0) console.log(`ok   ${name}: attw --profile esm-only`);
  else fail('attw (esm-only) reported problems', attw.output);

  const license = run('tar', ['-xzOf', file, 'package/LICENSE'], dir);
  if (license.status === 0 && /^MIT License/.test(license.stdout)) {
    console.log(`ok   ${name}: LICENSE (MIT) packed`);
  } else {
    fail('the tarball has no MIT LICENSE (package/LICENSE)', license.output);
  }
}

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env } });
  const output = `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}`;
  return { status: result.error ? 1 : result.status, stdout: result.stdout ?? '', output };
}

function indent(text) {
  return text
    .trim()
    .split('\n')
    .map((line) => `    ${line}`)
    .join('\n');
}
