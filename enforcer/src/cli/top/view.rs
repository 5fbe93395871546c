//! Drawing `enforcer top`: a header, the destinations' table, the selected
//! destination's rejections, the keys, and a confirmation over it all when
//! an action waits for one.

use std::time::Instant;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Cell, Clear, Paragraph, Row as TableRow, Sparkline, Table, TableState},
};

use super::model::{HISTORY, Pending, Row, Top, classes, countdown, sparkline};
use crate::api::BreakerState;

/// Columns of the per-row sparkline.
const SPARK: usize = 20;

pub fn draw(frame: &mut Frame, top: &Top, now: Instant) {
    let [header, table, chart, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(6),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(top)), header);
    draw_table(frame, top, now, table);
    draw_chart(frame, top, chart);
    frame.render_widget(Paragraph::new(keys_line(top)), keys);
    if let Some(pending) = top.pending {
        draw_confirmation(frame, pending);
    }
}

fn header_line(top: &Top) -> Line<'static> {
    let switch = if top.paused {
        Span::styled(
            "PAUSED: every connection passes",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        )
    } else {
        Span::styled("enforcing", Style::new().fg(Color::Green))
    };
    let open = top
        .rows
        .iter()
        .filter(|r| r.d.state != BreakerState::Closed)
        .count();
    Line::from(vec![
        Span::styled("enforcer top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw("  "),
        switch,
        Span::raw(format!(
            "  {} destinations, {open} not closed  sort: {}  policy: {}",
            top.rows.len(),
            top.sort.name(),
            top.policy.as_deref().unwrap_or("all")
        )),
    ])
}

fn state_cell(state: BreakerState) -> Cell<'static> {
    let (text, color) = match state {
        BreakerState::Closed => ("closed", Color::Green),
        BreakerState::Open => ("open", Color::Red),
        BreakerState::HalfOpen => ("half-open", Color::Yellow),
        BreakerState::Unknown => ("unknown", Color::Gray),
    };
    Cell::from(text).style(Style::new().fg(color).add_modifier(Modifier::BOLD))
}

/// The table's columns, in the order [`table_row`] fills them.
const COLUMNS: [(&str, Constraint); 14] = [
    ("DEST", Constraint::Min(22)),
    ("POLICY", Constraint::Length(12)),
    ("STATE", Constraint::Length(9)),
    ("OPEN FOR", Constraint::Length(8)),
    ("ACTIVE", Constraint::Length(6)),
    ("CAP", Constraint::Length(5)),
    ("LIMIT", Constraint::Length(5)),
    ("CLASSES", Constraint::Length(18)),
    ("ATT/S", Constraint::Length(7)),
    ("FAIL/S", Constraint::Length(7)),
    ("REJ/S", Constraint::Length(7)),
    ("FAILED", Constraint::Length(8)),
    ("REJECTED", Constraint::Length(8)),
    ("REJECTIONS/S", Constraint::Length(SPARK as u16)),
];

fn draw_table(frame: &mut Frame, top: &Top, now: Instant, area: Rect) {
    let header = TableRow::new(COLUMNS.map(|(title, _)| title))
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = top.rows.iter().map(|r| table_row(top, r, now));
    let table = Table::new(rows, COLUMNS.map(|(_, width)| width))
        .header(header)
        .block(Block::bordered().title(" destinations "))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::default().with_selected(top.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

/// One destination's cells, in [`COLUMNS`]' order.
fn table_row(top: &Top, r: &Row, now: Instant) -> TableRow<'static> {
    let d = &r.d;
    let or_dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let cells: [Cell<'static>; COLUMNS.len()] = [
        Cell::from(match &d.netns_name {
            Some(name) => format!("{} ({name})", d.dest),
            None => d.dest.to_string(),
        }),
        Cell::from(d.policy.clone()),
        state_cell(d.state),
        Cell::from(top.open_left(r, now).map_or_else(String::new, countdown)),
        Cell::from(d.active.to_string()),
        Cell::from(or_dash(d.max_connections)),
        Cell::from(or_dash(d.limit)),
        Cell::from(classes(d)),
        Cell::from(format!("{:.1}", r.rates.attempts)),
        Cell::from(format!("{:.1}", r.rates.failures)),
        Cell::from(format!("{:.1}", r.rates.rejections)),
        Cell::from(d.failures.total().to_string()),
        Cell::from(d.rejections.total().to_string()),
        Cell::from(sparkline(&r.rejections, SPARK)).style(Style::new().fg(Color::Red)),
    ];
    TableRow::new(cells)
}

fn draw_chart(frame: &mut Frame, top: &Top, area: Rect) {
    let selected = top.selected_index().and_then(|i| top.rows.get(i));
    let title = selected.map_or_else(
        || " rejections per second ".to_owned(),
        |r| {
            format!(
                " {}: rejections per second, last {HISTORY} reads ",
                r.d.dest
            )
        },
    );
    let data = selected.map_or(&[][..], |r| r.rejections.as_slice());
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(title))
            .data(data)
            .style(Style::new().fg(Color::Red)),
        area,
    );
}

fn keys_line(top: &Top) -> Line<'static> {
    let keys = "q quit  s sort  p policy  ↑↓ select  t trip  r reset";
    match &top.message {
        Some(m) => Line::from(vec![
            Span::raw(keys),
            Span::raw("  │  "),
            Span::styled(m.clone(), Style::new().add_modifier(Modifier::BOLD)),
        ]),
        None => Line::from(keys),
    }
}

fn draw_confirmation(frame: &mut Frame, pending: Pending) {
    let text = match pending {
        Pending::Trip(id) => format!("Trip {} (forced open in every namespace)? y/n", id.dest),
        Pending::Reset(id) => format!("Reset {} (closed, as new)? y/n", id.dest),
    };
    let area = frame.area();
    let width = (text.len() as u16 + 4).min(area.width);
    let popup = Rect {
        x: area.x + area.width.saturating_sub(width) / 2,
        y: area.y + area.height / 2,
        width,
        height: 3.min(area.height),
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(" confirm ")),
        popup,
    );
}
