//! Request metrics (CP-IS078): every HTTP request counted per area of the service, with its status
//! class and a latency histogram. Recording is a handful of relaxed atomic additions (no lock on
//! the hot path); the monitor takes the counts every minute and writes them to `request_minutes`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::reports::performance::{bucket_index, Histogram, BUCKETS};

/// The areas the performance report breaks requests down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    ChildCareAlert,
    PatientSearch,
    FhirApi,
    MailboxApi,
    LaPortal,
    SignIn,
    Administration,
    Reports,
    Health,
    StaticFiles,
    Other,
}

impl Area {
    /// Every area, in the report's order.
    pub const ALL: [Area; 11] = [
        Area::ChildCareAlert,
        Area::PatientSearch,
        Area::FhirApi,
        Area::MailboxApi,
        Area::LaPortal,
        Area::SignIn,
        Area::Administration,
        Area::Reports,
        Area::Health,
        Area::StaticFiles,
        Area::Other,
    ];

    /// The name stored in `request_minutes.area` and shown on the report.
    pub fn label(self) -> &'static str {
        match self {
            Area::ChildCareAlert => "Child Care Alert tab",
            Area::PatientSearch => "Patient search and details",
            Area::FhirApi => "FHIR API",
            Area::MailboxApi => "LA mailbox API",
            Area::LaPortal => "LA portal",
            Area::SignIn => "Sign-in",
            Area::Administration => "Administration",
            Area::Reports => "Reports",
            Area::Health => "Health",
            Area::StaticFiles => "Static files",
            Area::Other => "Other",
        }
    }

    pub fn from_label(label: &str) -> Option<Area> {
        Area::ALL.into_iter().find(|a| a.label() == label)
    }
}

/// `path` is `prefix` itself or below it.
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The area of a request, from its route pattern (never its path, which may hold an NHS number).
/// "(unmatched)" (a page that does not exist) and the start page are "Other".
pub fn area_of(route_pattern: &str) -> Area {
    let p = route_pattern;
    if p.starts_with("/patients/") && p.ends_with("/child-care-alert") {
        Area::ChildCareAlert
    } else if under(p, "/search") || under(p, "/patients") || under(p, "/local-authorities") {
        Area::PatientSearch
    } else if under(p, "/cpis/FHIR") {
        Area::FhirApi
    } else if under(p, "/mesh") {
        Area::MailboxApi
    } else if under(p, "/la") {
        Area::LaPortal
    } else if ["/sign-in", "/sign-out", "/select-role", "/change-password"].contains(&p) {
        Area::SignIn
    } else if under(p, "/admin") {
        Area::Administration
    } else if under(p, "/reports") {
        Area::Reports
    } else if p == "/health" {
        Area::Health
    } else if under(p, "/static") {
        Area::StaticFiles
    } else {
        Area::Other
    }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

/// One area's counts since the last [`Metrics::take`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaCounts {
    pub area: Area,
    pub requests: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    pub histogram: Histogram,
}

/// The in-memory aggregator, shared by every worker of an instance (it lives in `AppState`).
#[derive(Default)]
pub struct Metrics {
    areas: [Counters; Area::ALL.len()],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts one request: its area from the route pattern, 4xx or 5xx, and its latency.
    pub fn record(&self, route_pattern: &str, status: u16, elapsed: Duration) {
        let c = &self.areas[area_of(route_pattern) as usize];
        c.requests.fetch_add(1, Ordering::Relaxed);
        match status {
            400..=499 => c.client_errors.fetch_add(1, Ordering::Relaxed),
            500..=599 => c.server_errors.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
        c.buckets[bucket_index(elapsed.as_secs_f64() * 1000.0)].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, per area that had requests, leaving zeros behind. Each
    /// counter is swapped on its own, so a request recorded meanwhile lands in this take or the
    /// next, never in neither.
    pub fn take(&self) -> Vec<AreaCounts> {
        Area::ALL
            .into_iter()
            .zip(self.areas.iter())
            .filter_map(|(area, c)| {
                let requests = c.requests.swap(0, Ordering::Relaxed);
                let client_errors = c.client_errors.swap(0, Ordering::Relaxed);
                let server_errors = c.server_errors.swap(0, Ordering::Relaxed);
                let mut histogram = Histogram::default();
                for (slot, b) in histogram.0.iter_mut().zip(c.buckets.iter()) {
                    *slot = b.swap(0, Ordering::Relaxed);
                }
                (requests + client_errors + server_errors + histogram.total() > 0).then_some(AreaCounts {
                    area,
                    requests,
                    client_errors,
                    server_errors,
                    histogram,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_table_has_its_area() {
        let cases = [
            ("/patients/{nhs_number}/child-care-alert", Area::ChildCareAlert),
            ("/patients/{nhs_number}", Area::PatientSearch),
            ("/search", Area::PatientSearch),
            ("/local-authorities", Area::PatientSearch),
            ("/local-authorities/{code}", Area::PatientSearch),
            ("/cpis/FHIR/R4/CareTeam", Area::FhirApi),
            ("/cpis/FHIR/R4/metadata", Area::FhirApi),
            ("/mesh/v1/{la}/outbox", Area::MailboxApi),
            ("/mesh/v1/{la}/inbox/{message_id}", Area::MailboxApi),
            ("/la", Area::LaPortal),
            ("/la/uploads/{id}", Area::LaPortal),
            ("/sign-in", Area::SignIn),
            ("/sign-out", Area::SignIn),
            ("/select-role", Area::SignIn),
            ("/change-password", Area::SignIn),
            ("/admin/users/{id}/edit", Area::Administration),
            ("/admin/local-authorities", Area::Administration),
            ("/admin/jobs", Area::Administration),
            ("/reports", Area::Reports),
            ("/reports/cp-is078", Area::Reports),
            ("/reports/cp-is078.csv", Area::Reports),
            ("/health", Area::Health),
            ("/static", Area::StaticFiles),
            ("/static/cpis.css", Area::StaticFiles),
            ("/", Area::Other),
            ("/developers", Area::Other),
            ("(unmatched)", Area::Other),
            // Prefixes only match whole segments.
            ("/lazy", Area::Other),
            ("/administrator", Area::Other),
            ("/healthy", Area::Other),
        ];
        for (pattern, area) in cases {
            assert_eq!(area_of(pattern), area, "{pattern}");
        }
        // Every area's label reads back.
        for a in Area::ALL {
            assert_eq!(Area::from_label(a.label()), Some(a));
        }
        assert_eq!(Area::from_label("nonsense"), None);
    }

    #[test]
    fn requests_are_counted_per_area_and_taken_once() {
        let m = Metrics::new();
        m.record("/search", 200, Duration::from_millis(3));
        m.record("/search", 404, Duration::from_millis(30));
        m.record("/patients/{nhs_number}/child-care-alert", 500, Duration::from_micros(800));
        m.record("/health", 503, Duration::from_secs(11));
        let mut taken = m.take();
        taken.sort_by_key(|c| c.area);
        assert_eq!(taken.len(), 3);
        assert_eq!(taken[0].area, Area::ChildCareAlert);
        assert_eq!((taken[0].requests, taken[0].client_errors, taken[0].server_errors), (1, 0, 1));
        assert_eq!(taken[0].histogram.0[0], 1);
        assert_eq!(taken[1].area, Area::PatientSearch);
        assert_eq!((taken[1].requests, taken[1].client_errors, taken[1].server_errors), (2, 1, 0));
        assert_eq!((taken[1].histogram.0[2], taken[1].histogram.0[5]), (1, 1));
        assert_eq!(taken[2].area, Area::Health);
        assert_eq!(taken[2].histogram.0[13], 1);
        // Taken: nothing is left.
        assert!(m.take().is_empty());
    }

    #[test]
    fn counting_from_many_threads_loses_nothing() {
        let m = std::sync::Arc::new(Metrics::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.record("/search", 200, Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let mut total = 0;
        for t in threads {
            while !t.is_finished() {
                total += m.take().iter().map(|c| c.requests).sum::<u64>();
            }
            t.join().unwrap();
        }
        total += m.take().iter().map(|c| c.requests).sum::<u64>();
        assert_eq!(total, 4000);
    }
}
