use std::time::Duration;

use super::*;
use crate::chaos::experiment::Experiment;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn experiment(extra: &str) -> Experiment {
    Experiment::parse(&format!(
        "name = \"t\"\nduration = \"1s\"\nbaseline = \"1s\"\nrecovery = \"2s\"\n\
         [[fault]]\nkind = \"refuse\"\ndestinations = [\"10.0.0.0/24:80\"]\n{extra}"
    ))
    .unwrap()
}

fn ratio(good: u64, total: u64) -> Option<Sample> {
    Some(Sample::Counts { good, total })
}

/// Steps `course` every 100 ms from `from` to `to` (exclusive), each sample
/// from `sample(t)`; the steps that were not `Wait`.
fn run(
    course: &mut Course,
    from: u64,
    to: u64,
    sample: impl Fn(u64) -> Vec<Option<Sample>>,
) -> Vec<(u64, Step)> {
    (from..to)
        .step_by(100)
        .filter_map(|t| {
            let step = course.step(ms(t), &sample(t));
            (step != Step::Wait).then_some((t, step))
        })
        .collect()
}

const STEADY: &str =
    "[[steady_state]]\nsuccess_ratio = \"10.0.0.1:80\"\nwindow = \"500ms\"\ntolerance = 0.1\n";

#[test]
fn baseline_then_injection_then_recovery_with_its_time() {
    let mut c = Course::new(experiment(STEADY));
    // 10 connects per 100 ms; all succeed but while the faults are on and
    // for 300 ms after.
    let good_until = |t: u64| -> u64 {
        let bad = |u: u64| (1100..2300).contains(&u);
        (0..=t).step_by(100).filter(|u| !bad(*u)).count() as u64 * 10
    };
    let steps = run(&mut c, 0, 4000, |t| {
        vec![ratio(good_until(t), (t / 100 + 1) * 10)]
    });
    assert_eq!(steps[0], (1000, Step::Arm));
    assert_eq!(steps[1], (2000, Step::Disarm));
    let (done_at, done) = steps[2].clone();
    assert_eq!(done, Step::Done);
    assert_eq!(c.stage, Stage::Completed);
    let recovery = c.recovery().unwrap();
    assert_eq!(ms(done_at) - ms(2000), recovery);
    // Bad until 2300, then the 500 ms window must be nearly all good again.
    assert!(recovery >= ms(300) && recovery <= ms(900), "{recovery:?}");
    let check = &c.checks()[0];
    assert!((check.baseline.unwrap() - 1.0).abs() < 1e-9, "{check:?}");
    assert_eq!(check.worst, Some(0.0));
    assert_eq!(check.held, Some(false));
    assert_eq!(c.hypothesis_held(), Some(false));
    assert_eq!(c.injected(), Some(ms(1000)));
}

#[test]
fn a_steady_state_that_holds_is_a_hypothesis_that_held() {
    let mut c = Course::new(experiment(STEADY));
    let steps = run(&mut c, 0, 3000, |t| vec![ratio(t / 100 * 10, t / 100 * 10)]);
    assert_eq!(steps.last().unwrap().1, Step::Done);
    assert_eq!(c.hypothesis_held(), Some(true));
    assert_eq!(c.checks()[0].held, Some(true));
}

#[test]
fn a_measure_below_its_bound_aborts_and_disarms_at_once() {
    let mut c = Course::new(experiment(
        "[[abort]]\nsuccess_ratio = \"10.0.0.9:80\"\nwindow = \"300ms\"\nbelow = 0.9\n",
    ));
    // Fine until 1500 ms, then every connect fails.
    let steps = run(&mut c, 0, 5000, |t| {
        let good = t.min(1500) / 100 * 10;
        vec![ratio(good, t / 100 * 10)]
    });
    assert_eq!(steps[0], (1000, Step::Arm));
    let (at, step) = steps[1].clone();
    assert_eq!(step, Step::Disarm);
    assert!((1600..=1900).contains(&at), "aborted at {at}");
    let abort = c.abort().unwrap();
    assert_eq!(abort.reason, "success_ratio");
    assert!(abort.figure.unwrap() < 0.9);
    assert_eq!(abort.bound, Some(0.9));
    assert!(abort.condition.starts_with("abort[0]"), "{abort:?}");
    assert_eq!(c.hypothesis_held(), Some(false));
    // No steady-state check: recovered at once, and over as aborted.
    assert_eq!(steps[2].1, Step::Done);
    assert_eq!(c.stage, Stage::Aborted);
}

#[test]
fn a_trip_outside_the_targets_aborts_one_inside_does_not() {
    let mut c = Course::new(experiment("[[abort]]\ntrip = \"non_target\"\n"));
    run(&mut c, 0, 1100, |_| vec![None]);
    assert!(c.injecting());
    assert_eq!(
        c.tripped(ms(1150), "10.0.0.7:80".parse().unwrap()),
        Step::Wait
    );
    assert_eq!(
        c.tripped(ms(1160), "[::ffff:10.0.0.7]:80".parse().unwrap()),
        Step::Wait,
        "a v4-mapped address is the same target"
    );
    assert_eq!(
        c.tripped(ms(1200), "10.0.1.7:80".parse().unwrap()),
        Step::Disarm
    );
    let abort = c.abort().unwrap();
    assert_eq!(
        (abort.reason.as_str(), abort.dest.as_deref()),
        ("trip", Some("10.0.1.7:80"))
    );
    c.disarmed(ms(3));
    assert_eq!(c.abort().unwrap().reaction_ms, Some(3.0));
}

#[test]
fn a_named_trip_fires_for_that_destination_only() {
    let mut c = Course::new(experiment("[[abort]]\ntrip = \"10.0.0.5:80\"\n"));
    run(&mut c, 0, 1100, |_| vec![None]);
    assert_eq!(
        c.tripped(ms(1150), "10.0.1.1:80".parse().unwrap()),
        Step::Wait
    );
    assert_eq!(
        c.tripped(ms(1160), "10.0.0.5:80".parse().unwrap()),
        Step::Disarm
    );
}

#[test]
fn an_abort_during_the_baseline_injects_nothing() {
    let mut c = Course::new(experiment(""));
    run(&mut c, 0, 500, |_| vec![]);
    assert_eq!(c.stop(ms(500), "operator", "operator".into()), Step::Done);
    assert_eq!(c.stage, Stage::Aborted);
    assert_eq!(c.injected(), None);
    assert_eq!(c.hypothesis_held(), None);
}

#[test]
fn no_recovery_within_the_recovery_time_completes_without_one() {
    let mut c = Course::new(experiment(STEADY));
    // Fails from the injection on, for good.
    let steps = run(&mut c, 0, 6000, |t| {
        let good = t.min(1000) / 100 * 10;
        vec![ratio(good, t / 100 * 10)]
    });
    let (at, step) = steps.last().unwrap().clone();
    assert_eq!(step, Step::Done);
    assert_eq!(at, 4000, "2 s of recovery after the end at 2 s");
    assert_eq!(c.recovery(), None);
    assert_eq!(c.stage, Stage::Completed);
}

#[test]
fn an_interrupted_course_stays_interrupted() {
    let mut c = Course::new(experiment(""));
    run(&mut c, 0, 1100, |_| vec![]);
    c.interrupt();
    assert_eq!(c.stage, Stage::Interrupted);
    assert_eq!(c.stop(ms(1200), "operator", "operator".into()), Step::Wait);
}
