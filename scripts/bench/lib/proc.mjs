// Process figures from /proc (Linux), for harnesses that measure the processes they started.
import { readFileSync } from 'node:fs';

/** CPU a process has used so far, user and system apart, in µs (clock-tick resolution: 10 ms). */
export function processCpuTimesUs(pid) {
  // Fields after the command name, which sits in parentheses and may itself hold spaces.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) * 10_000, system: Number(f[12]) * 10_000 };
}

/** CPU a process has used so far, user + system, in µs. */
export function processCpuUs(pid) {
  const t = processCpuTimesUs(pid);
  return t.user + t.system;
}
