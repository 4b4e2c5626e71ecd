/**
 * A private, throw-away `redis-server` on a free loopback port, for the benchmarks (shipped with the
 * `tallyworks bench` CLI) and the tests.
 *
 * Why a private server instead of the developer's Redis on 6379: tests kill, restart and flush Redis,
 * and benchmarks flush it, which must never happen to a shared instance; and each test needs a clean
 * keyspace without coordinating with other test files that run in parallel processes.
 *
 * Over 350 lines because it is the whole test harness for real servers: a single server (options, kill,
 * restart, output capture, cleanup on exit) and a cluster of them, which shares that lifecycle.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

const HOST = '127.0.0.1' as const;

/**
 * How long {@link startRedisServer} / {@link RedisServer.restart} wait for the first PING reply. Generous:
 * a server restarted from a large append-only file on a loaded machine was seen to take over 5 s to load.
 */
const READY_TIMEOUT_MS = 30_000;
/** Gap between PING attempts while the server starts up. */
const POLL_INTERVAL_MS = 20;
/** How long stop() waits after SIGTERM before escalating to SIGKILL (a wedged server must not hang a test run). */
const STOP_GRACE_MS = 5_000;
/** Cap on the captured server output kept for error messages: the tail is what explains a failure. */
const MAX_OUTPUT_CHARS = 16_384;
/** Attempts at a fresh port when another process grabs the probed port before redis binds it. */
const START_ATTEMPTS = 3;

export const REDIS_SERVER_NOT_FOUND_MESSAGE =
  'redis-server not found on PATH: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) to run the Redis tests';

/** Options for {@link startRedisServer}. */
export interface RedisServerOptions {
  /**
   * Enable the append-only file with `appendfsync always`, so every acknowledged write survives a
   * SIGKILL and is reloaded by {@link RedisServer.restart}. Default `false` (pure in-memory server).
   */
  appendOnly?: boolean;
  /** `requirepass`: clients must AUTH with it (the harness pings with it too). */
  password?: string;
  /**
   * Also serve TLS on a second free port ({@link RedisServer.tlsPort}) with these PEM files; the plain
   * port stays open for the harness and for tests that want both.
   */
  tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
  /** Start as a Redis Cluster node (`--cluster-enabled yes`); {@link startRedisCluster} joins them. */
  clusterNode?: boolean;
  /** `maxclients`: connections the server accepts at once (tests use it to refuse a second connection). */
  maxClients?: number;
}

/** A private `redis-server` child process started by {@link startRedisServer}. */
export interface RedisServer {
  /** The loopback port the server listens on (never a fixed port such as 6379). */
  readonly port: number;
  readonly host: '127.0.0.1';
  /** `redis://127.0.0.1:<port>` (without the password). */
  readonly url: string;
  /** The TLS port, when started with `tls`. */
  readonly tlsPort: number | undefined;
  /** The server's private working directory (AOF files live here); removed by {@link RedisServer.stop}. */
  readonly dir: string;
  /** Whether the server process is currently alive. */
  readonly running: boolean;
  /**
   * Send `signal` (default `SIGKILL`, i.e. a crash) to the server and resolve once the process has
   * exited. Resolves immediately if it is not running. The directory is kept so {@link restart} can
   * reload the AOF.
   */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /**
   * Start the server again on the same port and directory (so AOF data is reloaded) and resolve once
   * it answers PING. If it is still running it is SIGKILLed first. Rejects after {@link stop}.
   */
  restart(): Promise<void>;
  /**
   * Shut the server down (SIGTERM, escalating to SIGKILL if it hangs), wait for the exit and remove
   * the directory. Idempotent: later calls return the same promise.
   */
  stop(): Promise<void>;
}

/**
 * Cuts the AOF back to its last whole transaction before a restart, with `redis-check-aof --fix`.
 *
 * Why: a SIGKILL can cut Redis's write() of the AOF short inside a script's `MULTI … EXEC` block (Redis
 * persists a script's effects, not the script). Redis 7.0's loader (`aof-load-truncated yes`) then
 * truncates at the last whole command, which is inside the MULTI, and leaves the file ending in a MULTI
 * without EXEC. The next block appended (a client sending the lost call again: it never applied) is
 * then read into that open transaction at the following load, and the cut-off commands apply with it: a
 * second crash doubled part of one call in a lax counter test (126 increments over 40 keys, once in ~30
 * runs). `redis-check-aof --fix` truncates before the incomplete MULTI instead, as Redis does on its
 * own once that loader bug is fixed. Nothing to do without an AOF yet; without the tool, nothing is done.
 */
async function repairAof(dir: string): Promise<void> {
  const manifest = join(dir, 'appendonlydir', 'appendonly.aof.manifest');
  if (!existsSync(manifest)) return;
  await new Promise<void>((resolve) => {
    const child = spawn('redis-check-aof', ['--fix', manifest], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.once('error', () => resolve()); // not installed: Redis's own truncation is all there is
    child.once('exit', () => resolve());
    child.stdin!.end('y\n'); // it asks before it truncates
  });
}

/**
 * Every live child across all harness instances. A process-level 'exit' handler SIGKILLs them, so a
 * test file that throws, forgets stop(), or calls process.exit() never leaves an orphaned redis-server
 * holding a port. ('exit' handlers do not run when the test process itself dies from an unhandled
 * signal; nothing in-process can cover that case.)
 */
const liveChildren = new Set<ChildProcess>();
/** Temp dirs of servers not yet stopped; removed on exit too, so a forgotten stop() leaves no litter. */
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone: nothing to clean up.
      }
    }
    // 'exit' handlers must be synchronous, hence rmSync.
    for (const dir of liveDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // Best effort: a leftover temp dir is not worth failing the exit over.
      }
    }
  });
}

/**
 * Ask the OS for a free loopback port by binding port 0 and releasing it. There is an unavoidable
 * window before redis binds it; {@link startRedisServer} retries on a fresh port if it is lost.
 */
function pickFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close((err) => (err ? reject(err) : port > 0 ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}

/**
 * One PING over a raw socket. Also sends `INFO server` and checks `process_id` against our child's
 * pid: if another process grabbed the port first, a PONG from *that* server must not be mistaken for
 * ours becoming ready. Resolves false (never rejects) on refusal, `-LOADING` or any other reply.
 */
function pingOnce(port: number, pid: number, password: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: HOST, port });
    let reply = '';
    let done = false;
    const finish = (ok: boolean): void => {
      if (done) return;
      done = true;
      // Destroying also clears the socket's idle timer, so nothing lingers in the event loop.
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => finish(false));
    const auth = password === undefined ? '' : `AUTH ${password}\r\n`;
    socket.once('connect', () => socket.write(`${auth}PING\r\nINFO server\r\n`));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      if (auth !== '' && reply.startsWith('+OK\r\n')) reply = reply.slice(5);
      const firstLineEnd = reply.indexOf('\r\n');
      if (firstLineEnd === -1) return;
      if (reply.slice(0, firstLineEnd) !== '+PONG') return finish(false);
      const match = /process_id:(\d+)\r\n/.exec(reply);
      if (match) finish(Number(match[1]) === pid);
    });
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}

class RedisServerProcess implements RedisServer {
  readonly host = HOST;
  readonly url: string;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private output = '';
  private stopping: Promise<void> | undefined;

  constructor(
    readonly port: number,
    readonly tlsPort: number | undefined,
    readonly dir: string,
    private readonly options: RedisServerOptions,
  ) {
    this.url = `redis://${HOST}:${port}`;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** Spawn redis-server and wait for PING; on failure the child is killed before rejecting. */
  async launch(): Promise<void> {
    const args = [
      '--port', String(this.port),
      '--bind', HOST,
      // No RDB snapshots: tests must not pay for (or be confused by) background saves.
      '--save', '',
      '--appendonly', this.options.appendOnly === true ? 'yes' : 'no',
      // fsync on every write so a SIGKILL loses nothing that was acknowledged.
      ...(this.options.appendOnly === true ? ['--appendfsync', 'always'] : []),
      ...(this.options.password === undefined ? [] : ['--requirepass', this.options.password]),
      ...(this.options.clusterNode === true ? ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] : []),
      ...(this.options.maxClients === undefined ? [] : ['--maxclients', String(this.options.maxClients)]),
      ...(this.options.tls === undefined
        ? []
        : ['--tls-port', String(this.tlsPort), '--tls-cert-file', this.options.tls.certFile, '--tls-key-file', this.options.tls.keyFile, '--tls-ca-cert-file', this.options.tls.caFile, '--tls-auth-clients', 'no']),
      '--dir', this.dir,
      '--daemonize', 'no',
      '--protected-mode', 'no',
      // Empty logfile = stdout, which we capture for error messages.
      '--logfile', '',
    ];
    this.output = '';
    const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const capture = (chunk: Buffer): void => {
      this.output = (this.output + chunk.toString('utf8')).slice(-MAX_OUTPUT_CHARS);
    };
    child.stdout?.on('data', capture);
    child.stderr?.on('data', capture);

    // ENOENT (and other spawn failures) arrive asynchronously via 'error', success via 'spawn'.
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (err: NodeJS.ErrnoException) => {
        reject(err.code === 'ENOENT' ? new Error(REDIS_SERVER_NOT_FOUND_MESSAGE) : err);
      });
    });
    // Keep a permanent listener: a later 'error' (e.g. a failed kill) must not crash the test process.
    child.on('error', (err) => capture(Buffer.from(`\n[harness] child error: ${err.message}\n`)));

    this.child = child;
    liveChildren.add(child);
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child);
        if (this.child === child) this.child = undefined;
        // Wait for 'close' (pipes drained) so the server's last words, e.g. "Address already in use",
        // are captured. Bounded: a forked grandchild could inherit and hold the pipes open, so after a
        // grace period they are destroyed, which guarantees no handle outlives the process.
        let settled = false;
        const settle = (): void => {
          if (settled) return;
          settled = true;
          clearTimeout(grace);
          child.stdout?.destroy();
          child.stderr?.destroy();
          capture(Buffer.from(`\n[harness] redis-server exited (code ${code}, signal ${signal})\n`));
          resolve();
        };
        // Unref'd: the still-open (ref'd, see busy()) pipes keep the loop alive until 'close'.
        const grace = setTimeout(settle, 250);
        grace.unref();
        child.once('close', settle);
      });
    });

    try {
      await this.waitForPing(child);
    } catch (err) {
      await this.kill('SIGKILL');
      throw err;
    }
    this.idle(child);
  }

  private async waitForPing(child: ChildProcess): Promise<void> {
    const pid = child.pid ?? -1;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (this.child !== child) {
        // Let the pipes drain first so the message carries the server's final output.
        await this.exited;
        throw new Error(`redis-server on port ${this.port} exited before answering PING. Output:\n${this.output}`);
      }
      if (await pingOnce(this.port, pid, this.options.password)) return;
      if (Date.now() >= deadline) {
        throw new Error(
          `redis-server on port ${this.port} did not answer PING within ${READY_TIMEOUT_MS} ms. Output:\n${this.output}`,
        );
      }
      // Unref'd: the (still ref'd) child keeps the loop alive while we wait, and a stray timer can
      // never hold the process open on its own.
      await delay(POLL_INTERVAL_MS, undefined, { ref: false });
    }
  }

  /**
   * At rest, the child and its pipes must not keep the test process alive: a test that forgets
   * stop() should still let node exit (the 'exit' hook then kills the server) rather than hang.
   * While an operation is waiting on the child, it is ref'd again (see {@link busy}).
   */
  private idle(child: ChildProcess): void {
    child.unref();
    (child.stdout as Socket | null)?.unref();
    (child.stderr as Socket | null)?.unref();
  }

  /** Ref the child while awaiting it, so the event loop cannot drain mid-operation. */
  private busy(child: ChildProcess): void {
    child.ref();
    (child.stdout as Socket | null)?.ref();
    (child.stderr as Socket | null)?.ref();
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    this.busy(child);
    child.kill(signal);
    await this.exited;
  }

  async restart(): Promise<void> {
    if (this.stopping) throw new Error(`redis-server on port ${this.port} was stopped; it cannot be restarted`);
    await this.kill('SIGKILL');
    if (this.options.appendOnly === true) await repairAof(this.dir);
    await this.launch();
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutdown();
    return this.stopping;
  }

  private async shutdown(): Promise<void> {
    const child = this.child;
    if (child !== undefined) {
      this.busy(child);
      child.kill('SIGTERM');
      const escalate = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      escalate.unref();
      try {
        await this.exited;
      } finally {
        clearTimeout(escalate);
      }
    }
    await rm(this.dir, { recursive: true, force: true });
    liveDirs.delete(this.dir);
  }

  /** Captured output of the current (or last) server process, for diagnostics. */
  get log(): string {
    return this.output;
  }
}

/**
 * Start a private `redis-server` on a free loopback port with its own temporary directory and resolve
 * once it answers PING.
 *
 * Always pair with {@link RedisServer.stop} (e.g. in `t.after` / `after`) so the directory is removed;
 * a forgotten server does not keep the test process alive and is SIGKILLed when the process exits.
 *
 * @throws Error with {@link REDIS_SERVER_NOT_FOUND_MESSAGE} when `redis-server` is not on PATH, or an
 * Error containing the server's output if it does not become ready within 5 s.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), 'tallyworks-redis-'));
  liveDirs.add(dir);
  try {
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServerProcess(await pickFreePort(), options.tls === undefined ? undefined : await pickFreePort(), dir, options);
      try {
        await server.launch();
        return server;
      } catch (err) {
        // Losing the probed port to another process is the one failure worth retrying (on a new port).
        const lostPort = /address already in use/i.test(server.log);
        if (!lostPort || attempt >= START_ATTEMPTS) throw err;
      }
    }
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
    throw err;
  }
}

/** A private Redis Cluster of masters on free loopback ports, started by {@link startRedisCluster}. */
export interface RedisCluster {
  /** Startup nodes for an ioredis `Cluster`. */
  readonly nodes: ReadonlyArray<{ readonly host: '127.0.0.1'; readonly port: number }>;
  readonly servers: readonly RedisServer[];
  /** Stops every node (idempotent). */
  stop(): Promise<void>;
}

/** How long {@link startRedisCluster} waits for every node to report `cluster_state:ok`. */
const CLUSTER_READY_TIMEOUT_MS = 20_000;

/**
 * Starts `masters` (at least 3) cluster-enabled redis-servers and `replicasPerMaster` replicas of each,
 * joins them with `redis-cli --cluster create … --cluster-replicas N` (slots spread evenly over the
 * masters), and resolves once every node reports `cluster_state:ok` (and, with replicas, every replica
 * its link to its master up).
 */
export async function startRedisCluster(masters = 3, replicasPerMaster = 0): Promise<RedisCluster> {
  const servers: RedisServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    for (let i = 0; i < masters * (1 + replicasPerMaster); i++) servers.push(await startRedisServer({ clusterNode: true }));
    const create = spawn('redis-cli', ['--cluster', 'create', ...servers.map((s) => `${HOST}:${s.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    create.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    create.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    const [code] = (await once(create, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`redis-cli --cluster create failed (exit ${code}):\n${output.slice(-MAX_OUTPUT_CHARS)}`);
    const deadline = Date.now() + CLUSTER_READY_TIMEOUT_MS;
    for (const server of servers) {
      while (!(await clusterOk(server.port)) || (replicasPerMaster > 0 && !(await replicaLinkUp(server.port)))) {
        if (Date.now() >= deadline) throw new Error(`Redis Cluster node ${server.port} did not reach cluster_state:ok (and its replica link) within ${CLUSTER_READY_TIMEOUT_MS} ms`);
        // Ref'd: the nodes are unref'd at rest, and this wait must keep the process alive.
        await delay(50);
      }
    }
    return { nodes: servers.map((s) => ({ host: HOST, port: s.port })), servers, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** True when the node on `port` is a master, or a replica whose link to its master is up and synced. */
async function replicaLinkUp(port: number): Promise<boolean> {
  const reply = await bulkReply(port, 'INFO replication');
  if (/role:master/.test(reply)) return true;
  return /master_link_status:up/.test(reply) && /master_sync_in_progress:0/.test(reply);
}

/** One inline command whose reply is a bulk string, to the node on `port`: its text ('' on failure, after 1 s at most). */
function bulkReply(port: number, command: string): Promise<string> {
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: HOST, port });
    let reply = '';
    const finish = (text: string): void => {
      socket.destroy();
      resolve(text);
    };
    socket.setTimeout(1_000, () => finish(''));
    socket.once('connect', () => socket.write(`${command}\r\n`));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      const header = /^\$(\d+)\r\n/.exec(reply);
      if (header === null) {
        if (reply.includes('\r\n')) finish(''); // an error or another kind of reply
        return;
      }
      const body = header[0].length;
      if (reply.length >= body + Number(header[1])) finish(reply.slice(body, body + Number(header[1])));
    });
    socket.once('error', () => finish(''));
    socket.once('close', () => finish(''));
  });
}

/** True when the node on `port` answers CLUSTER INFO with cluster_state:ok and every slot assigned. */
async function clusterOk(port: number): Promise<boolean> {
  const reply = await bulkReply(port, 'CLUSTER INFO');
  return /cluster_state:ok/.test(reply) && /cluster_slots_assigned:16384/.test(reply);
}
