// A real `suppressd serve` for the suite: a free loopback port, a data directory of its own,
// ready once gRPC health answers SERVING.

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

import { healthClient, repoRoot, unary, within } from './contract';

/** `SUPPRESSD_BIN`, else the debug build under `CARGO_TARGET_DIR` or the repository's
 * `target/`. A missing binary is an error, never a skip: build it first. */
export function serverBinary(): string {
  const given = process.env.SUPPRESSD_BIN;
  const target = path.resolve(repoRoot, process.env.CARGO_TARGET_DIR || 'target');
  const binary = given ? path.resolve(given) : path.join(target, 'debug', 'suppressd');
  if (!existsSync(binary)) {
    throw new Error(
      `no suppressd binary at ${binary}: ` +
        'run `cargo build --bin suppressd` (or set SUPPRESSD_BIN)',
    );
  }
  return binary;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Server {
  readonly dataDir = mkdtempSync(path.join(os.tmpdir(), 'suppressd-node-'));
  address = '';
  private child: ChildProcess | undefined;
  private output = '';

  async start(attempts = 3, timeoutMs = 60_000): Promise<void> {
    const binary = serverBinary();
    for (let attempt = 0; attempt < attempts; attempt++) {
      // `--listen 127.0.0.1:0` is not reported back: pick a port that is free now, and pick
      // again if another process takes it before the server does.
      this.address = `127.0.0.1:${await freePort()}`;
      const child = spawn(
        binary,
        ['serve', '--listen', this.address, '--data-dir', path.join(this.dataDir, 'data')],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
        },
      );
      this.child = child;
      child.stdout?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
      if (await this.waitServing(child, timeoutMs)) return;
      await this.stop(false);
    }
    throw new Error(`suppressd did not become SERVING; its output:\n${this.output}`);
  }

  private async waitServing(child: ChildProcess, timeoutMs: number): Promise<boolean> {
    const health = healthClient(this.address);
    const deadline = Date.now() + timeoutMs;
    try {
      while (Date.now() < deadline) {
        if (child.exitCode !== null || child.signalCode !== null) return false;
        try {
          const reply = await unary<{ status: string }>((cb) =>
            health.Check({ service: '' }, within(1_000), cb),
          );
          if (reply.status === 'SERVING') return true;
        } catch {
          // not listening yet
        }
        await sleep(50);
      }
      return false;
    } finally {
      health.close();
    }
  }

  async stop(remove = true): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(killer);
    }
    if (remove) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
