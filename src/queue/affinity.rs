//! One worker per queue, each pinned to a CPU. With `queue num 0-N fanout` the kernel puts a
//! packet on the queue of the CPU that handled it (the first queue plus the CPU's number modulo
//! the count), so the k-th queue's worker on the k-th CPU reads what that CPU just handled:
//! warm caches, and no worker woken across cores. With one queue nothing is pinned.

use std::io;
use std::mem;

/// Where the worker of each queue runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts it (a single queue).
    Anywhere,
    Cpu(usize),
}

/// The placement of each of `queues` workers: the k-th on the k-th CPU the daemon may use
/// (wrapping around when there are more queues than CPUs).
pub fn placements(queues: usize) -> io::Result<Vec<Placement>> {
    if queues <= 1 {
        return Ok(vec![Placement::Anywhere; queues]);
    }
    let cpus = allowed_cpus()?;
    if cpus.is_empty() {
        return Ok(vec![Placement::Anywhere; queues]);
    }
    Ok((0..queues)
        .map(|k| Placement::Cpu(cpus[k % cpus.len()]))
        .collect())
}

/// The CPUs the calling thread may run on (its affinity mask: systemd's `CPUAffinity=`,
/// `taskset`, a cgroup's cpuset).
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let setsize = 8 * mem::size_of::<libc::cpu_set_t>();
    // SAFETY: CPU_ISSET reads `set` at an index below its size in bits.
    Ok((0..setsize)
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `placement`.
pub fn pin_current_thread(placement: Placement) -> io::Result<()> {
    let Placement::Cpu(cpu) = placement else {
        return Ok(());
    };
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    if cpu >= 8 * mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: `cpu` is below the set's size in bits (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let rc =
        unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_queue_is_not_pinned_and_more_wrap_around_the_allowed_cpus() {
        assert_eq!(placements(1).unwrap(), [Placement::Anywhere]);
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let three = placements(cpus.len() + 1).unwrap();
        assert_eq!(three[0], Placement::Cpu(cpus[0]));
        assert_eq!(three[cpus.len()], Placement::Cpu(cpus[0]));
    }

    #[test]
    fn a_pinned_thread_runs_on_its_cpu_only() {
        let cpu = *allowed_cpus().unwrap().last().unwrap();
        let seen = std::thread::spawn(move || {
            pin_current_thread(Placement::Cpu(cpu)).unwrap();
            allowed_cpus().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, [cpu]);
    }
}
