import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Makes sure `child` does not outlive the test process, even when that process is SIGKILLed (a
 * jest worker killed on timeout, a run interrupted with ^C twice): an 'exit' handler never runs
 * then, and a redis-server or gateway left behind holds ports and memory for good.
 *
 * A watchdog shell reads a pipe from this process; the kernel closes the pipe however this process
 * ends, the read returns, and the watchdog kills the child, if it is still the process it was
 * started as (its command name is checked, so a recycled pid is left alone). The watchdog ends when
 * the child does. A `scratchDir` (the child's temporary files) is removed after the kill.
 */
export function killWithParent(child: ChildProcess, commandName: string, scratchDir?: string): void {
  if (child.pid === undefined) return;
  const pid = child.pid;
  // The child's scratch directory goes with it: the stop that would have removed it never runs.
  const cleanup = scratchDir ? `; rm -rf '${scratchDir.replaceAll("'", `'\\''`)}'` : '';
  const watchdog = spawn('sh', ['-c', `read _; [ "$(cat /proc/${pid}/comm 2>/dev/null)" = "${commandName.slice(0, 15)}" ] && kill -9 ${pid}${cleanup}`], {
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  watchdog.on('error', () => undefined);
  watchdog.stdin!.on('error', () => undefined);
  // Neither the watchdog nor its pipe may keep the test process alive.
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?: () => void }).unref?.();
  child.once('exit', () => watchdog.kill('SIGKILL'));
}
