/**
 * `meshext push FILE.wasm oci://REGISTRY/REPO:TAG [--layout oci|docker|artifact] [--insecure]
 *  [--username U --password P | --password-stdin] [--docker-config FILE] [--json]`
 *
 * Publishes a module in a layout Istio accepts and prints the manifest digest to put in
 * `spec.wasm.sha256`. Default layout `oci`: the OCI "compat" image (one tar+gzip layer holding
 * plugin.wasm), what `docker build` of `FROM scratch` + `COPY plugin.wasm ./` produces, readable by
 * Istio and other Proxy-Wasm hosts alike.
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { credentialsFor, loadDockerConfigFile } from '../fetch/credentials.ts';
import type { RegistryCredentials } from '../fetch/credentials.ts';
import { describeError } from '../fetch/errors.ts';
import { LAYOUTS } from '../fetch/layouts.ts';
import type { Layout } from '../fetch/layouts.ts';
import { pushModule } from '../fetch/push.ts';
import type { PushResult } from '../fetch/push.ts';
import { parseModuleUrl } from '../fetch/reference.ts';

export interface PushCommandOptions {
  file: string;
  ref: string;
  layout?: Layout;
  insecure?: boolean;
  username?: string;
  password?: string;
  /** Docker config file for credentials (default $DOCKER_CONFIG/config.json or ~/.docker/config.json). */
  dockerConfig?: string;
  json?: boolean;
}

export interface CommandIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Source for --password-stdin. */
  stdin?: () => Promise<string>;
}

const defaultIO: CommandIO = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  stdin: async () => {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8');
  },
};

export const PUSH_USAGE = `Usage: meshext push FILE.wasm oci://REGISTRY/REPO:TAG [options]

Publishes a Wasm module as an OCI image Istio's TrafficExtension/WasmPlugin can pull, and prints
the manifest digest to put in spec.wasm.sha256.

Options:
  --layout oci|docker|artifact  image layout (default oci: OCI compat image, plugin.wasm in one
                                tar+gzip layer; docker: the same with Docker media types;
                                artifact: raw module layer application/vnd.module.wasm.content.layer.v1+wasm)
  --insecure                    allow plain HTTP and unverified TLS for this registry
  --username USER               registry user (with --password or --password-stdin)
  --password PASS               registry password
  --password-stdin              read the password from standard input
  --docker-config FILE          docker config JSON to take credentials from
  --json                        print the result as JSON
  -h, --help                    show this help
`;

function parse(argv: string[]): PushCommandOptions & { passwordStdin?: boolean; help?: boolean } {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      layout: { type: 'string' },
      insecure: { type: 'boolean' },
      username: { type: 'string', short: 'u' },
      password: { type: 'string', short: 'p' },
      'password-stdin': { type: 'boolean' },
      'docker-config': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return { file: '', ref: '', help: true };
  if (positionals.length !== 2) throw new Error(`expected FILE.wasm and an oci:// reference, got ${positionals.length} argument(s)`);
  const layout = values.layout as Layout | undefined;
  if (layout !== undefined && !LAYOUTS.includes(layout)) throw new Error(`--layout must be one of ${LAYOUTS.join(', ')}`);
  const o: PushCommandOptions & { passwordStdin?: boolean } = { file: positionals[0]!, ref: positionals[1]! };
  if (layout) o.layout = layout;
  if (values.insecure) o.insecure = true;
  if (values.username !== undefined) o.username = values.username;
  if (values.password !== undefined) o.password = values.password;
  if (values['password-stdin']) o.passwordStdin = true;
  if (values['docker-config'] !== undefined) o.dockerConfig = values['docker-config'];
  if (values.json) o.json = true;
  return o;
}

/** Runs `meshext push`; returns the process exit code (0 ok, 1 push failed, 2 usage error). */
export async function pushCommand(argvOrOptions: string[] | PushCommandOptions, io: CommandIO = defaultIO): Promise<number> {
  let o: PushCommandOptions & { passwordStdin?: boolean; help?: boolean };
  try {
    o = Array.isArray(argvOrOptions) ? parse(argvOrOptions) : argvOrOptions;
  } catch (err) {
    io.stderr(`meshext push: ${(err as Error).message}\n\n${PUSH_USAGE}`);
    return 2;
  }
  if (o.help) {
    io.stdout(PUSH_USAGE);
    return 0;
  }
  try {
    const parsed = parseModuleUrl(o.ref);
    if (parsed.scheme !== 'oci' || !parsed.oci) throw new Error(`${o.ref} is not an oci:// reference`);
    let credentials: RegistryCredentials | undefined;
    if (o.passwordStdin) o.password = (await (io.stdin ?? defaultIO.stdin!)()).replace(/\r?\n$/, '');
    if (o.username !== undefined || o.password !== undefined) {
      if (o.username === undefined || o.password === undefined) throw new Error('--username and --password (or --password-stdin) go together');
      credentials = { username: o.username, password: o.password };
    } else {
      const path = o.dockerConfig ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
      credentials = credentialsFor(loadDockerConfigFile(path), parsed.oci.registry);
    }
    const wasm = await readFile(o.file);
    const pushOpts: Parameters<typeof pushModule>[0] = { wasm, ref: o.ref, layout: o.layout ?? 'oci', insecure: o.insecure === true };
    if (credentials) pushOpts.credentials = credentials;
    const r: PushResult = await pushModule(pushOpts);
    if (o.json) {
      io.stdout(`${JSON.stringify(r, null, 2)}\n`);
    } else {
      io.stdout(
        `pushed ${o.file} to ${r.url} (layout ${r.layout}, ${r.uploadedBlobs} blob(s) uploaded)\n` +
          `digest: ${r.digest}\n` +
          `pinned: ${r.pinnedUrl}\n` +
          `sha256: ${r.sha256}\n` +
          `\nspec:\n  wasm:\n    url: ${r.url}\n    sha256: ${r.sha256}\n`,
      );
    }
    return 0;
  } catch (err) {
    io.stderr(`meshext push: ${describeError(err)}\n`);
    return 1;
  }
}
