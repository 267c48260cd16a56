/**
 * The meshext command line: run, validate, analyze, demo, push.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { Command, Option } from 'commander';
import { parseAllDocuments } from 'yaml';
import { ConfigError, formatIssue, type ConfigIssue } from '../errors.ts';
import { isLevel, logger, setLevel } from '../observability/log.ts';
import type { Proxy } from '../proxy/proxy.ts';
import { VERSION } from '../version.ts';

// Heavy modules (schema compilation, the data plane) load only for the commands that need them,
// so `--help`, `--version` and `validate` start fast.
const config = () => Promise.all([import('../config/bootstrap.ts'), import('../config/extensions.ts')]);

const log = logger('main');

/** A file is a bootstrap unless its documents look like Kubernetes resources (apiVersion + kind). */
function isResourceFile(file: string): boolean {
  try {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'));
    const list = Array.isArray(docs) ? docs : [docs];
    return list.some((d) => {
      const v = d.toJS?.() as Record<string, unknown> | null;
      return v !== null && typeof v === 'object' && 'apiVersion' in v && 'kind' in v;
    });
  } catch {
    return true;
  }
}

/** Validates bootstrap and TrafficExtension files; returns every issue found. */
export async function validateFiles(files: string[]): Promise<ConfigIssue[]> {
  const [{ loadBootstrapFile }, { loadExtensions }] = await config();
  const issues: ConfigIssue[] = [];
  const resources: string[] = [];
  for (const f of files) {
    let isDir = false;
    try {
      isDir = statSync(f).isDirectory();
    } catch {
      issues.push({ file: f, line: 0, path: '', level: 'error', message: 'no such file or directory' });
      continue;
    }
    if (isDir || isResourceFile(f)) {
      resources.push(f);
      continue;
    }
    try {
      loadBootstrapFile(f);
    } catch (err) {
      if (err instanceof ConfigError) issues.push(...err.issues);
      else issues.push({ file: f, line: 0, path: '', level: 'error', message: (err as Error).message });
    }
  }
  if (resources.length) issues.push(...loadExtensions(resources).issues);
  return issues;
}

function installSignalHandlers(proxy: Proxy): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'draining: no new connections; in-flight requests finish');
    // A last resort, as Envoy's parent-shutdown time: whatever still holds the process after the
    // drain window must not keep it alive.
    setTimeout(() => {
      log.warn('shutdown did not finish within the drain timeout + 5 s; exiting');
      process.exit(0);
    }, proxy.bootstrap.drainTimeoutMs + 5000);
    await proxy.drain();
    await proxy.close();
    log.info('drained; exiting');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

export function buildCli(): Command {
  const program = new Command();
  program
    .name('meshext')
    .description("Istio's proxy extensibility in TypeScript: Proxy-Wasm plugins and Envoy Lua scripts attached with TrafficExtension")
    .version(VERSION, '-v, --version')
    .showHelpAfterError();

  program
    .command('run')
    .description('run the proxy with a bootstrap file and TrafficExtension sources (watched)')
    .requiredOption('-c, --config <file>', 'bootstrap YAML file')
    .option('-e, --extensions <paths...>', 'TrafficExtension YAML files or directories (added to the bootstrap\'s extensions)')
    .addOption(new Option('--concurrency <n>', 'worker threads (0 = one per core)').default('1').argParser((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`--concurrency must be a whole number >= 0, got '${v}'`);
      return String(n);
    }))
    .option('-l, --log-level <level>', 'log level for every component (trace|debug|info|warn|error|critical|off)')
    .action(async (opts: { config: string; extensions?: string[]; concurrency: string; logLevel?: string }) => {
      const [{ loadBootstrapFile }] = await config();
      const { startProxy } = await import('../proxy/proxy.ts');
      if (opts.logLevel) {
        if (!isLevel(opts.logLevel)) {
          console.error(`error: --log-level must be one of trace, debug, info, warn, error, critical, off (got '${opts.logLevel}')`);
          process.exit(1);
        }
        setLevel('all', opts.logLevel);
      }
      let bootstrap;
      try {
        bootstrap = loadBootstrapFile(opts.config);
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const i of err.issues) console.error(formatIssue(i));
          process.exit(1);
        }
        throw err;
      }
      let proxy: Proxy;
      try {
        proxy = await startProxy({
          bootstrap,
          concurrency: Number(opts.concurrency),
          extensionPaths: opts.extensions,
          commandLine: { config: opts.config, extensions: opts.extensions ?? [], concurrency: Number(opts.concurrency) },
          onQuit: () => process.exit(0),
        });
      } catch (err) {
        console.error(`error: the proxy could not start: ${(err as Error).message}`);
        process.exit(1);
      }
      installSignalHandlers(proxy);
      log.info({ ports: proxy.ports, admin: proxy.adminPort }, 'meshext is LIVE');
    });

  program
    .command('validate')
    .description('validate bootstrap and TrafficExtension files; prints file:line: path: message per error')
    .argument('<files...>', 'files or directories')
    .action(async (files: string[]) => {
      const issues = await validateFiles(files);
      for (const i of issues) (i.level === 'error' ? console.error : console.warn)(`${formatIssue(i)}${i.level === 'warning' ? ' (warning)' : ''}`);
      const errors = issues.filter((i) => i.level === 'error').length;
      if (errors > 0) {
        console.error(`${errors} error(s)`);
        process.exit(1);
      }
      console.log(`✔ ${files.join(', ')}: valid`);
    });

  program
    .command('analyze')
    .description('istioctl-analyze style report for TrafficExtension/WasmPlugin files')
    .argument('<files...>', 'files or directories')
    .action(async (files: string[]) => {
      const [, { loadExtensions, formatAnalyzeLine }] = await config();
      const issues = loadExtensions(files).issues;
      if (issues.length === 0) {
        console.log('✔ No validation issues found when analyzing the given files.');
        return;
      }
      for (const i of issues) console.log(formatAnalyzeLine(i, { withOrigin: true }));
      if (issues.some((i) => i.level === 'error')) process.exit(1);
    });

  program
    .command('demo')
    .description('start the proxy with an embedded configuration, a built-in upstream app and example extensions')
    .option('--port <n>', 'listener port', process.env.MESHEXT_DEMO_PORT ?? '8080')
    .action(async (opts: { port: string }) => {
      const { runDemo } = await import('./demo.ts');
      const proxy = await runDemo({ port: Number(opts.port) });
      installSignalHandlers(proxy);
    });

  program
    .command('push')
    .description('publish a Wasm module to an OCI registry in a layout Istio accepts; prints the sha256 to use')
    .argument('[file]', 'the .wasm file')
    .argument('[reference]', 'oci://REGISTRY/REPO:TAG')
    // push parses its own flags (--layout, --insecure, credentials, --help): pass everything on.
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .helpOption(false)
    .action(async (_file: string | undefined, _ref: string | undefined, _opts: unknown, cmd: Command) => {
      const mod = (await import('./push.ts')) as { pushCommand?: (argv: string[]) => Promise<number> };
      if (!mod.pushCommand) {
        console.error('push is not available in this build');
        process.exit(1);
      }
      const code = await mod.pushCommand(cmd.args);
      process.exit(code);
    });

  return program;
}

/** Entry used by bin/meshext.js and `node src/cli/main.ts`. */
export async function runCli(argv: string[]): Promise<void> {
  await buildCli().parseAsync(argv);
}

const entry = process.argv[1];
if (entry !== undefined && import.meta.filename === realpathSync(entry)) await runCli(process.argv);
