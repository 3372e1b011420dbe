// The packages as npm will publish them: every manifest has what a registry page and an
// installer need, every README opens with how to install the package, the Node version in
// `engines` covers the Node APIs the code uses, Linux-only packages say so, and every source map
// in `dist` points at a file the package ships. Reads the built `dist` (run `pnpm build` first,
// as `pnpm test:unit` does). publint and attw run over the packed tarballs in
// `pnpm check:packages` (see check-packages.int.test.ts).
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const root = join(import.meta.dirname, '..');
const ENGINES_NODE = '>=20.12';

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  description?: string;
  keywords?: string[];
  homepage?: string;
  bugs?: { url?: string };
  repository?: { type?: string; url?: string; directory?: string };
  license?: string;
  type?: string;
  engines?: Record<string, string>;
  os?: string[];
  files?: string[];
  publishConfig?: Record<string, unknown>;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;
const rootManifest = readJson<Manifest & { scripts: Record<string, string> }>(
  join(root, 'package.json'),
);
const folders = readdirSync(join(root, 'packages')).filter((name) =>
  existsSync(join(root, 'packages', name, 'package.json')),
);
const manifests = new Map(
  folders.map((folder) => [
    folder,
    readJson<Manifest>(join(root, 'packages', folder, 'package.json')),
  ]),
);
const publishable = folders.filter((folder) => !manifests.get(folder)?.private);
const folderOf = new Map([...manifests].map(([folder, m]) => [m.name, folder]));

/** Every file under `dir`, recursively, as absolute paths. */
function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** Workspace packages `folder` depends on at run time, directly or through others. */
function workspaceClosure(folder: string, seen = new Set<string>()): Set<string> {
  for (const dep of Object.keys(manifests.get(folder)?.dependencies ?? {})) {
    const depFolder = folderOf.get(dep);
    if (depFolder && !seen.has(depFolder)) {
      seen.add(depFolder);
      workspaceClosure(depFolder, seen);
    }
  }
  return seen;
}

/** The package's own `src` files joined (its code, not its tests). */
function sourceText(folder: string): string {
  return walk(join(root, 'packages', folder, 'src'))
    .filter((path) => path.endsWith('.ts'))
    .map((path) => readFileSync(path, 'utf8'))
    .join('\n');
}

/** The lowest version a `>=x.y` range admits, as [major, minor, patch]. */
function minimumOf(range: string): number[] {
  const match = /^>=(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range);
  if (!match) throw new Error(`engines.node '${range}' is not of the form >=x.y[.z]`);
  return [Number(match[1]), Number(match[2] ?? 0), Number(match[3] ?? 0)];
}
const atLeast = (a: number[], b: number[]) => {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  return true;
};

/**
 * Node APIs newer than Node 20.0 that code might reach for, with the release that brought them
 * (Node's docs, "Added in"). Not exhaustive: a guard against the usual ones.
 */
const NODE_APIS: { api: string; pattern: RegExp; since: number[] }[] = [
  { api: 'util.styleText', pattern: /\bstyleText\b/, since: [20, 12, 0] },
  { api: 'process.loadEnvFile', pattern: /\bloadEnvFile\b/, since: [20, 12, 0] },
  { api: 'util.parseEnv', pattern: /\bparseEnv\b/, since: [20, 12, 0] },
  { api: 'import.meta.dirname', pattern: /import\.meta\.(dirname|filename)\b/, since: [20, 11, 0] },
  { api: 'AbortSignal.any', pattern: /AbortSignal\.any\b/, since: [20, 3, 0] },
  { api: 'events.addAbortListener', pattern: /\baddAbortListener\b/, since: [20, 5, 0] },
  { api: 'Object.groupBy / Map.groupBy', pattern: /\b(Object|Map)\.groupBy\b/, since: [21, 0, 0] },
  { api: 'Promise.withResolvers', pattern: /Promise\.withResolvers\b/, since: [22, 0, 0] },
  { api: 'Array.fromAsync', pattern: /Array\.fromAsync\b/, since: [22, 0, 0] },
  { api: 'fs.glob', pattern: /\b(glob|globSync)\s*\(/, since: [22, 0, 0] },
  { api: 'process.getBuiltinModule', pattern: /\bgetBuiltinModule\b/, since: [22, 3, 0] },
  { api: 'node:sqlite', pattern: /['"]node:sqlite['"]/, since: [22, 5, 0] },
];

describe('the workspace', () => {
  test('is MIT licensed, with the LICENSE at its root', () => {
    const license = readFileSync(join(root, 'LICENSE'), 'utf8');
    expect(license).toMatch(/^MIT License\n/);
    expect(license).toContain('Permission is hereby granted, free of charge');
    expect(rootManifest.license).toBe('MIT');
    expect(rootManifest.repository?.url).toMatch(/^git\+https:\/\/github\.com\/.+\.git$/);
    expect(rootManifest.engines?.node).toBe(ENGINES_NODE);
  });

  test('has a publishable package in every folder but the private bench', () => {
    expect(manifests.get('bench')?.private).toBe(true);
    expect(manifests.get('bench')?.publishConfig).toBeUndefined();
    expect(publishable.length).toBeGreaterThanOrEqual(8);
    expect(publishable).not.toContain('bench');
  });

  test('versions the publishable packages together with changesets, bench left out', () => {
    const config = readJson<{
      access: string;
      baseBranch: string;
      fixed: string[][];
      privatePackages: { version: boolean; tag: boolean };
    }>(join(root, '.changeset', 'config.json'));
    expect(config.access).toBe('public');
    expect(config.fixed).toHaveLength(1);
    expect([...(config.fixed[0] ?? [])].sort()).toEqual(
      publishable.map((folder) => manifests.get(folder)?.name).sort(),
    );
    expect(config.privatePackages).toEqual({ version: false, tag: false });
    expect(rootManifest.devDependencies).toHaveProperty('@changesets/cli');
    expect(rootManifest.scripts).toMatchObject({
      changeset: 'changeset',
      'version-packages': 'changeset version',
    });
    expect(rootManifest.scripts.release).toMatch(/pnpm check:packages && changeset publish$/);
  });

  test('CI runs publint and attw over every package as part of lint, and fails with them', () => {
    expect(rootManifest.scripts['check:packages']).toBe('node scripts/check-packages.mjs');
    const ci = readFileSync(join(root, '.ci', 'run'), 'utf8');
    expect(ci).toMatch(/\npnpm check:packages \|\| lint_ok=0\n/);
    // ...after the build (setup), and before the tests whose summary line closes the output.
    expect(ci.indexOf('bash scripts/setup.sh')).toBeLessThan(ci.indexOf('pnpm check:packages'));
    expect(ci.indexOf('pnpm check:packages')).toBeLessThan(ci.indexOf('pnpm test 2>&1'));
    expect(ci).toContain('if [ "$test_status" != 0 ] || [ "$lint_ok" = 0 ]; then exit 1; fi');
  });

  test('the root README says how to install from npm and what changes for AiiDA users', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    expect(readme).toMatch(/\n## Install from npm\n/);
    expect(readme).toContain('npm install --global @aiida/cli');
    expect(readme).toContain('What changes for AiiDA users');
    expect(readme).toContain('pnpm check:packages');
    expect(readme).toContain('pnpm changeset');
  });
});

describe.each(publishable)('@aiida/%s', (folder) => {
  const dir = join(root, 'packages', folder);
  const manifest = manifests.get(folder) as Manifest;

  test('has the manifest fields npm and its users need', () => {
    const repo = (rootManifest.repository?.url ?? '').replace(/^git\+/, '').replace(/\.git$/, '');
    expect(manifest.name).toBe(`@aiida/${folder}`);
    expect(manifest.description?.trim().length).toBeGreaterThan(10);
    expect(manifest.license).toBe('MIT');
    expect(manifest.type).toBe('module');
    expect(manifest.repository).toEqual({
      type: 'git',
      url: rootManifest.repository?.url,
      directory: `packages/${folder}`,
    });
    expect(manifest.homepage).toBe(`${repo}/tree/main/packages/${folder}#readme`);
    expect(manifest.bugs?.url).toBe(`${repo}/issues`);
    expect(manifest.keywords).toEqual(expect.arrayContaining(['aiida']));
    expect(manifest.publishConfig).toEqual({ access: 'public' });
    expect(manifest.engines).toEqual({ node: ENGINES_NODE });
    expect(manifest.files).toEqual(expect.arrayContaining(['dist', 'src', 'README.md']));
  });

  test('asks for a Node version that has every Node API its code uses', () => {
    const minimum = minimumOf(manifest.engines?.node ?? '');
    const text = sourceText(folder);
    const tooNew = NODE_APIS.filter(
      ({ pattern, since }) => pattern.test(text) && !atLeast(minimum, since),
    ).map(({ api, since }) => `${api} needs Node ${since.join('.')}`);
    expect(tooNew).toEqual([]);
  });

  test('says "os": ["linux"] exactly when it or a package it needs is Linux-only', () => {
    // Linux-only by design: the code refuses other systems with the `unsupported_platform` code.
    const refusesElsewhere = (f: string) =>
      /\b(assertLinux\(|ErrorCodes\.unsupportedPlatform\b)/.test(sourceText(f));
    const linuxOnly =
      refusesElsewhere(folder) || [...workspaceClosure(folder)].some((f) => refusesElsewhere(f));
    if (linuxOnly) expect(manifest.os).toEqual(['linux']);
    else expect(manifest.os).toBeUndefined();
  });

  test('opens its README with install instructions', () => {
    const readme = readFileSync(join(dir, 'README.md'), 'utf8');
    const lines = readme.split('\n');
    expect(lines[0]).toBe(`# @aiida/${folder}`);
    const install = lines.indexOf('## Install');
    const firstSection = lines.findIndex((line) => line.startsWith('## '));
    expect({ firstSection: lines[firstSection] }).toEqual({ firstSection: '## Install' });
    // Only prose between the title and the install section: no example, no list.
    const before = lines.slice(1, install);
    expect(before.filter((line) => /^(```|- |\* |\d+\. |\| )/.test(line))).toEqual([]);
    const end = lines.findIndex((line, i) => i > install && line.startsWith('## '));
    const section = lines.slice(install, end === -1 ? undefined : end).join('\n');
    expect(section).toMatch(new RegExp(`\`\`\`sh\\nnpm install (--global )?@aiida/${folder}\\b`));
    const [major, minor] = minimumOf(ENGINES_NODE);
    expect(section).toContain(`Node ${major}.${minor} or later`);
    expect(section).toContain('ESM only');
    expect(section).toContain('Coming from AiiDA');
    if (manifest.os) expect(section).toContain('"os": ["linux"]');
    const needsSqlite = folder === 'engine' || workspaceClosure(folder).has('engine');
    if (needsSqlite) {
      expect(section).toContain('better-sqlite3');
      expect(section).toMatch(/allowBuilds:[\s{]+better-sqlite3: true/);
      expect(section).toContain('pnpm approve-builds');
    } else {
      expect(section).not.toContain('better-sqlite3');
    }
  });

  test('ships the files every source map in dist points at', () => {
    const dist = join(dir, 'dist');
    if (!existsSync(dist))
      throw new Error(`packages/${folder}/dist is missing: run \`pnpm build\` first`);
    const shipped = (path: string) => {
      const rel = relative(dir, path);
      const top = rel.split(sep)[0] ?? '';
      return !rel.startsWith('..') && (manifest.files ?? []).includes(top);
    };
    const files = walk(dist);
    const maps = files.filter((path) => path.endsWith('.map'));
    expect(maps.length).toBeGreaterThan(0);
    const broken: string[] = [];
    // The dashboard's page (dist/page of @aiida/web) is a minified browser bundle served as an
    // asset, not a module anyone imports: it ships without a map, on purpose.
    const modules = files.filter(
      (p) => /\.(js|d\.ts)$/.test(p) && !relative(dist, p).startsWith(`page${sep}`),
    );
    for (const path of modules) {
      // Every emitted file names its map, and the map is there.
      const comment = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(path, 'utf8'));
      if (!comment?.[1]) broken.push(`${relative(dir, path)}: no sourceMappingURL`);
      else if (!existsSync(resolve(dirname(path), comment[1]))) {
        broken.push(`${relative(dir, path)}: its map ${comment[1]} is missing`);
      }
    }
    for (const map of maps) {
      const { sources, sourceRoot } = readJson<{ sources: string[]; sourceRoot?: string }>(map);
      for (const source of sources) {
        const target = resolve(dirname(map), sourceRoot ?? '', source);
        if (!existsSync(target) || !shipped(target)) {
          broken.push(
            `${relative(dir, map)} -> ${source}: ${existsSync(target) ? 'not in "files"' : 'no such file (a stale build?)'}`,
          );
        }
      }
    }
    expect(broken).toEqual([]);
  });
});
