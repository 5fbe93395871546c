//! CPUs for tests that need two things to happen on two CPUs at once.

/// Two CPUs this thread may run on; fails the test, saying `why` two are
/// needed, when it may run on fewer.
pub fn two(why: &str) -> [usize; 2] {
    let mine = rustix::thread::sched_getaffinity(None).expect("this thread's CPUs");
    let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&c| mine.is_set(c))
        .take(2)
        .collect();
    assert_eq!(cpus.len(), 2, "two CPUs are needed {why}");
    [cpus[0], cpus[1]]
}

/// Pins the calling thread to `cpu`.
pub fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).expect("pinning a thread");
}
