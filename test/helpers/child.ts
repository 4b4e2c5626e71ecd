/**
 * A forked child process of a multi-process test (a script of test/fixtures/, talking over IPC) and the
 * replies it sent, awaited by type with a deadline. A `{ type: 'progress', done }` reply is not queued: it
 * sets {@link Child.progress}.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, fork } from 'node:child_process';

export class Child<Reply extends { type: string }> {
  readonly proc: ChildProcess;
  private readonly replies: Reply[] = [];
  private readonly waiters: Array<() => void> = [];
  stderr = '';
  progress = 0;

  constructor(
    script: string,
    args: readonly string[],
    readonly id: string,
    private readonly waitMs = 30_000,
  ) {
    this.proc = fork(script, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    this.proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr = (this.stderr + chunk).slice(-4000)));
    this.proc.on('message', (reply: Reply) => {
      if (reply.type === 'progress') this.progress = (reply as unknown as { done: number }).done;
      else this.replies.push(reply);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  async next<T extends Reply['type']>(type: T): Promise<Extract<Reply, { type: T }>> {
    const deadline = Date.now() + this.waitMs;
    for (;;) {
      const i = this.replies.findIndex((r) => r.type === type);
      if (i >= 0) return this.replies.splice(i, 1)[0] as Extract<Reply, { type: T }>;
      if (this.proc.exitCode !== null || Date.now() > deadline) assert.fail(`${this.id}: no ${type} (exit ${this.proc.exitCode}); stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100).unref();
      });
    }
  }

  send(message: object): void {
    this.proc.send(message);
  }
}
