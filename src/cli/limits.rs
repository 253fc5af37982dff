//! What the process can hold: the default `--max-conns`.
//!
//! At start the open-file limit is raised to its hard limit, and `--max-conns`
//! defaults to three quarters of it (the rest is for listeners, logs and the
//! accept back-off's headroom). The threads runtime can hold fewer: every thread
//! costs memory maps (its stack, its guard page, its signal stack and that one's
//! guard), and a process that runs out of maps is aborted by the standard library
//! when it starts a thread. So for threads the default is also bounded by
//! `vm.max_map_count`: chat uses two threads per connection, echo one.
//! A connection that still cannot get a thread is refused (`! server full`).

use echochat::runtime::RuntimeKind;

/// Memory maps one thread costs (stack + guard, signal stack + guard).
const MAPS_PER_THREAD: usize = 4;

/// Which service the default is for.
#[derive(Debug, Clone, Copy)]
pub enum Service {
    /// One thread per connection on the threads runtime.
    Echo,
    /// Two threads per connection on the threads runtime.
    Chat,
}

/// Raises the open-file limit to the hard limit; returns the limit now in force.
fn raise_open_files() -> usize {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            log::warn!("cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| {
                usize::try_from(soft).unwrap_or(usize::MAX)
            })
        }
    }
}

/// `vm.max_map_count` (Linux; 65530 when it cannot be read).
fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}

/// The default `--max-conns` for `service` on `runtime` (raises the open-file limit).
pub fn default_max_conns(runtime: RuntimeKind, service: Service) -> usize {
    let by_files = raise_open_files() / 4 * 3;
    let max = if runtime == RuntimeKind::Threads {
        let threads = match service {
            Service::Echo => 1,
            Service::Chat => 2,
        };
        // An eighth of the maps stays for everything else the process maps.
        let by_maps = max_map_count() / 8 * 7 / (MAPS_PER_THREAD * threads);
        by_files.min(by_maps)
    } else {
        by_files
    };
    let max = max.max(1);
    log::info!("--max-conns defaults to {max} on the {runtime} runtime");
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_hold_fewer_than_tasks() {
        let tasks = default_max_conns(RuntimeKind::Tokio, Service::Chat);
        let chat = default_max_conns(RuntimeKind::Threads, Service::Chat);
        let echo = default_max_conns(RuntimeKind::Threads, Service::Echo);
        assert!(chat <= echo && echo <= tasks, "{chat} {echo} {tasks}");
        assert!(chat >= 1);
        assert!(chat <= max_map_count() / (2 * MAPS_PER_THREAD));
    }
}
