//! `enforcer top`: the destinations, live, in the terminal. Reads the
//! daemon's status every interval; trips and resets the selected destination
//! after a confirmation. What it shows and what its keys do is [`model`]'s;
//! the drawing is [`view`]'s; this module runs the terminal.

mod model;
mod view;

use std::time::{Duration, Instant};

use axum::http::Method;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind};

use self::model::{Action, Id, Press, Top};
use super::{Failure, client};
use crate::{
    api::{
        Dest, OverrideQuery, OverrideSet, ResetDone, ResetQuery, Status, StatusQuery,
        duration_within,
    },
    netns::Selector,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How often to read the daemon's status (`500ms`, `2s`; 100ms to 1m).
    #[arg(long, default_value = "1s", value_parser = interval)]
    interval: Duration,
    /// Start filtered to this policy's destinations (`p` cycles through
    /// the policies).
    #[arg(long)]
    policy: Option<String>,
    #[command(flatten)]
    client: client::Connection,
}

fn interval(text: &str) -> Result<Duration, String> {
    duration_within(
        "interval",
        text,
        Duration::from_millis(100)..=Duration::from_secs(60),
    )
}

pub fn execute(args: Args) -> Result<(), Failure> {
    // Refuse at once when the daemon cannot be reached, before the screen
    // is taken over.
    let first = status(&args.client)?;
    let mut top = Top::default();
    top.policy = args.policy.clone();
    top.update(first, Instant::now());
    let mut terminal = ratatui::init();
    let result = run(&mut terminal, &mut top, &args);
    ratatui::restore();
    result
}

fn run(terminal: &mut ratatui::DefaultTerminal, top: &mut Top, args: &Args) -> Result<(), Failure> {
    let mut next_read = Instant::now() + args.interval;
    loop {
        let now = Instant::now();
        if now >= next_read {
            refresh(top, &args.client);
            next_read = now + args.interval;
        }
        terminal
            .draw(|frame| view::draw(frame, top, now))
            .map_err(runtime)?;
        // Redrawn at least every second, for the countdowns.
        let wait = next_read
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        if !event::poll(wait).map_err(runtime)? {
            continue;
        }
        let Event::Key(key) = event::read().map_err(runtime)? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let press = match key.code {
            KeyCode::Char(c) => Press::Char(c),
            KeyCode::Up => Press::Up,
            KeyCode::Down => Press::Down,
            KeyCode::Esc => Press::Esc,
            _ => continue,
        };
        let done = match top.on_key(press) {
            Action::None => continue,
            Action::Quit => return Ok(()),
            Action::Trip(id) => trip(&args.client, id),
            Action::Reset(id) => reset(&args.client, top, id),
        };
        top.message = Some(done.unwrap_or_else(|e| format!("failed: {e}")));
        // Show what the action did at once.
        refresh(top, &args.client);
        next_read = Instant::now() + args.interval;
    }
}

fn runtime(e: std::io::Error) -> Failure {
    Failure::Runtime(e.into())
}

fn status(client: &client::Connection) -> Result<Status, Failure> {
    let target = client::target("/v1/status", &StatusQuery::default())?;
    client.call(Method::GET, &target, None)
}

/// Reads the status again; a failure shows in the message line and the
/// rows stay as they were.
fn refresh(top: &mut Top, client: &client::Connection) {
    match status(client) {
        Ok(status) => top.update(status, Instant::now()),
        Err(e) => top.message = Some(format!("cannot read the status: {e}")),
    }
}

fn trip(client: &client::Connection, id: Id) -> Result<String, Failure> {
    let query = OverrideQuery {
        dest: Dest(id.dest),
        lasting: None,
    };
    let set: OverrideSet = client.call(Method::POST, &client::target("/v1/trip", &query)?, None)?;
    Ok(format!(
        "{}: forced open until reset (every namespace)",
        set.dest
    ))
}

/// Resets the destination in its namespace; one tripped from here (or by
/// `enforcer trip`) is forced open in every namespace, and is reset in all
/// so that its override goes too.
fn reset(client: &client::Connection, top: &Top, id: Id) -> Result<String, Failure> {
    let overridden = top
        .rows
        .iter()
        .any(|r| r.id == id && r.d.override_kind.is_some());
    let netns = match (overridden, id.netns) {
        (false, Some(inode)) => Some(Selector::Inode(inode)),
        _ => None,
    };
    let query = ResetQuery {
        dest: Dest(id.dest),
        netns,
    };
    let _: ResetDone = client.call(Method::POST, &client::target("/v1/reset", &query)?, None)?;
    Ok(format!("{}: reset", id.dest))
}
