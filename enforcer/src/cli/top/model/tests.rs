use super::*;
use crate::api::{ByCause, Failures};

fn dest(addr: &str, policy: &str, state: BreakerState) -> Destination {
    Destination {
        dest: addr.parse().unwrap(),
        netns: Some(4_026_531_840),
        netns_name: None,
        netns_status: "host".to_owned(),
        policy: policy.to_owned(),
        state,
        active: 0,
        pending: 0,
        max_connections: None,
        limit: None,
        limit_change: None,
        ejection: None,
        baseline: None,
        attempts: 0,
        successes: 0,
        slow: 0,
        abandoned: 0,
        local_errors: 0,
        failures: Failures::default(),
        rejections: ByCause::default(),
        would_reject: ByCause::default(),
        probes: 0,
        probes_reclaimed: 0,
        trips: 0,
        trip_level: 0,
        guard_refusals: 0,
        open_for_ms: None,
        override_kind: None,
        override_for_ms: None,
        chaos: Vec::new(),
        classes: None,
    }
}

fn status(destinations: Vec<Destination>) -> Status {
    Status {
        paused: false,
        generation: 1,
        destinations,
    }
}

fn with(
    mut d: Destination,
    attempts: u64,
    refused: u64,
    rejected: u64,
    active: u32,
) -> Destination {
    d.attempts = attempts;
    d.failures.refused = refused;
    d.rejections.circuit = rejected;
    d.active = active;
    d
}

fn order(top: &Top) -> Vec<String> {
    top.rows.iter().map(|r| r.id.dest.to_string()).collect()
}

#[test]
fn rates_are_the_counts_moved_between_two_answers_per_second() {
    let mut top = Top::default();
    let t0 = Instant::now();
    let a = dest("10.0.0.1:80", "web", BreakerState::Closed);
    top.update(status(vec![with(a.clone(), 100, 10, 20, 0)]), t0);
    assert_eq!(
        top.rows[0].rates,
        Rates::default(),
        "nothing to compare yet"
    );
    top.update(
        status(vec![with(a, 110, 14, 26, 0)]),
        t0 + Duration::from_secs(2),
    );
    assert_eq!(
        top.rows[0].rates,
        Rates {
            attempts: 5.0,
            failures: 2.0,
            rejections: 3.0
        }
    );
    assert_eq!(top.rows[0].rejections, vec![0, 3]);
}

#[test]
fn the_sparkline_keeps_the_last_minute_of_rejection_rates() {
    let mut top = Top::default();
    let t0 = Instant::now();
    let a = dest("10.0.0.1:80", "web", BreakerState::Open);
    for i in 0..(HISTORY as u64 + 5) {
        top.update(
            status(vec![with(a.clone(), 0, 0, i * i, 0)]),
            t0 + Duration::from_secs(i),
        );
    }
    let history = &top.rows[0].rejections;
    assert_eq!(history.len(), HISTORY);
    // Rejections went from (i-1)² to i²: 2i - 1 a second.
    assert_eq!(history.last(), Some(&(2 * (HISTORY as u64 + 4) - 1)));
    assert_eq!(sparkline(&[0, 1, 4, 8], 4), " ▁▄█");
    assert_eq!(sparkline(&[8, 8, 8], 2), "██");
}

#[test]
fn s_sorts_by_failures_then_rejections_then_active_and_the_selection_stays() {
    let mut top = Top::default();
    let t0 = Instant::now();
    let rows = |r: [u64; 3]| {
        vec![
            with(
                dest("10.0.0.1:80", "web", BreakerState::Closed),
                0,
                r[0],
                0,
                1,
            ),
            with(
                dest("10.0.0.2:80", "web", BreakerState::Closed),
                0,
                0,
                r[1],
                2,
            ),
            with(
                dest("10.0.0.3:80", "web", BreakerState::Closed),
                0,
                0,
                0,
                r[2] as u32,
            ),
        ]
    };
    top.update(status(rows([0, 0, 9])), t0);
    top.update(status(rows([5, 3, 9])), t0 + Duration::from_secs(1));
    assert_eq!(order(&top), ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
    assert_eq!(top.selected_index(), Some(0));
    assert_eq!(top.on_key(Press::Down), Action::None);
    let selected = top.selected;
    top.on_key(Press::Char('s'));
    assert_eq!(top.sort, SortBy::Rejections);
    assert_eq!(order(&top), ["10.0.0.2:80", "10.0.0.1:80", "10.0.0.3:80"]);
    assert_eq!(top.selected, selected, "the selection follows its row");
    assert_eq!(top.selected_index(), Some(0));
    top.on_key(Press::Char('s'));
    assert_eq!(order(&top), ["10.0.0.3:80", "10.0.0.2:80", "10.0.0.1:80"]);
    top.on_key(Press::Char('s'));
    assert_eq!(top.sort, SortBy::Failures);
    // Down past the last row stays on it; up past the first too.
    for _ in 0..5 {
        top.on_key(Press::Char('j'));
    }
    assert_eq!(top.selected_index(), Some(2));
    for _ in 0..5 {
        top.on_key(Press::Up);
    }
    assert_eq!(top.selected_index(), Some(0));
}

#[test]
fn p_cycles_through_the_policies_and_back_to_all() {
    let mut top = Top::default();
    top.update(
        status(vec![
            dest("10.0.0.1:80", "web", BreakerState::Closed),
            dest("10.0.0.2:5432", "db", BreakerState::Closed),
        ]),
        Instant::now(),
    );
    assert_eq!(top.rows.len(), 2);
    top.on_key(Press::Char('p'));
    assert_eq!(top.policy.as_deref(), Some("db"));
    assert_eq!(order(&top), ["10.0.0.2:5432"]);
    assert_eq!(top.selected_index(), Some(0));
    top.on_key(Press::Char('p'));
    assert_eq!(order(&top), ["10.0.0.1:80"]);
    top.on_key(Press::Char('p'));
    assert_eq!(top.policy, None);
    assert_eq!(top.rows.len(), 2);
}

#[test]
fn trip_and_reset_wait_for_y_and_anything_else_cancels() {
    let mut top = Top::default();
    top.update(
        status(vec![dest("10.0.0.1:80", "web", BreakerState::Open)]),
        Instant::now(),
    );
    let id = top.rows[0].id;
    assert_eq!(top.on_key(Press::Char('r')), Action::None);
    assert_eq!(top.pending, Some(Pending::Reset(id)));
    assert_eq!(top.on_key(Press::Char('y')), Action::Reset(id));
    assert_eq!(top.pending, None);
    top.on_key(Press::Char('t'));
    assert_eq!(top.on_key(Press::Char('n')), Action::None);
    assert_eq!(top.message.as_deref(), Some("cancelled"));
    // A key that would quit only cancels while a confirmation waits.
    top.on_key(Press::Char('t'));
    assert_eq!(top.on_key(Press::Char('q')), Action::None);
    assert_eq!(top.on_key(Press::Char('q')), Action::Quit);
}

#[test]
fn an_open_destination_counts_down_from_when_it_was_read() {
    let mut top = Top::default();
    let t0 = Instant::now();
    let mut open = dest("10.0.0.1:80", "web", BreakerState::Open);
    open.open_for_ms = Some(90_000);
    let closed = dest("10.0.0.2:80", "web", BreakerState::Closed);
    top.update(status(vec![open, closed]), t0);
    let (a, b) = (&top.rows[0], &top.rows[1]);
    assert_eq!(
        top.open_left(a, t0 + Duration::from_secs(25)),
        Some(Duration::from_secs(65))
    );
    assert_eq!(
        top.open_left(a, t0 + Duration::from_secs(100)),
        Some(Duration::ZERO)
    );
    assert_eq!(top.open_left(b, t0), None);
    assert_eq!(countdown(Duration::from_secs(65)), "1m 05s");
    assert_eq!(countdown(Duration::from_secs(42)), "42s");
    assert_eq!(countdown(Duration::from_secs(3_725)), "1h 02m");
}

#[test]
fn the_classes_column_names_the_classes_holding_slots() {
    let mut d = dest("10.0.0.1:80", "web", BreakerState::Closed);
    assert_eq!(classes(&d), "", "classes off");
    let counts = |active| crate::api::ClassCounts {
        active,
        admitted: 10,
        shed: 0,
    };
    d.classes = Some(
        [
            ("critical".to_owned(), counts(2)),
            ("default".to_owned(), counts(1)),
            ("sheddable".to_owned(), counts(0)),
        ]
        .into(),
    );
    assert_eq!(classes(&d), "critical 2 · default 1");
}
