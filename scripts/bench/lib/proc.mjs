// Process figures from /proc (Linux), for harnesses that measure the processes they started.
import { readFileSync } from 'node:fs';

/** CPU a process has used so far, user + system, in µs (clock-tick resolution: 10 ms). */
export function processCpuUs(pid) {
  // Fields after the command name, which sits in parentheses and may itself hold spaces.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}
