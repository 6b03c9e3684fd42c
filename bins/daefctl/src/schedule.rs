//! `daefctl schedule …`: periodic schedules.

use daef_client::model::{ScheduleFilter, ScheduleInfo, ScheduleSubmission};

use crate::Ctx;
use crate::cli::{ScheduleCommand, ScheduleCreate, ScheduleList};
use crate::explain::exit;
use crate::job::job_submission;
use crate::output::{self, Table, time};

pub(crate) async fn run(ctx: &Ctx, command: ScheduleCommand) -> anyhow::Result<u8> {
    match command {
        ScheduleCommand::Create(args) => create(ctx, args).await,
        ScheduleCommand::List(args) => list(ctx, args).await,
        ScheduleCommand::Show { schedule_id } => {
            let schedule = ctx.client.schedule(&schedule_id).await?;
            show(ctx, &schedule)
        }
        ScheduleCommand::Pause { schedule_id } => {
            let schedule = ctx.client.pause_schedule(&schedule_id).await?;
            show(ctx, &schedule)
        }
        ScheduleCommand::Resume { schedule_id } => {
            let schedule = ctx.client.resume_schedule(&schedule_id).await?;
            show(ctx, &schedule)
        }
        ScheduleCommand::Delete { schedule_id } => {
            let deleted = ctx.client.delete_schedule(&schedule_id).await?;
            if ctx.json {
                output::json(&deleted)?;
            } else {
                println!("{} deleted (its jobs stay)", deleted.schedule_id);
            }
            Ok(exit::OK)
        }
    }
}

async fn create(ctx: &Ctx, args: ScheduleCreate) -> anyhow::Result<u8> {
    let schedule = ScheduleSubmission {
        schedule_id: args.schedule_id,
        cron: args.cron,
        job: job_submission(args.job)?,
        paused: args.paused,
    };
    let created = ctx.client.create_schedule(&schedule).await?;
    show(ctx, &created)
}

/// When it fires next, as a table cell.
fn next_tick(schedule: &ScheduleInfo) -> String {
    match schedule.next_fire_at {
        Some(at) => time(at),
        None => "paused".to_owned(),
    }
}

fn show(ctx: &Ctx, schedule: &ScheduleInfo) -> anyhow::Result<u8> {
    if ctx.json {
        output::json(schedule)?;
        return Ok(exit::OK);
    }
    println!("schedule   {}", schedule.schedule_id);
    println!("tenant     {}", schedule.tenant);
    println!("cron       {} (UTC)", schedule.cron);
    println!("job type   {}", schedule.job.job_type);
    println!("next tick  {}", next_tick(schedule));
    let last = match (&schedule.last_fire_at, &schedule.last_job_id) {
        (Some(at), Some(job)) => format!("{} -> {job}", time(*at)),
        _ => "never fired".to_owned(),
    };
    println!("last tick  {last}");
    Ok(exit::OK)
}

async fn list(ctx: &Ctx, args: ScheduleList) -> anyhow::Result<u8> {
    let filter = ScheduleFilter {
        tenant: args.tenant,
        limit: args.limit,
        offset: args.offset,
    };
    let list = ctx.client.list_schedules(&filter).await?;
    if ctx.json {
        output::json(&list)?;
        return Ok(exit::OK);
    }
    let mut table = Table::new(&["SCHEDULE", "TENANT", "CRON", "TYPE", "NEXT", "LAST JOB"]);
    for s in &list.schedules {
        table.row(vec![
            s.schedule_id.clone(),
            s.tenant.clone(),
            s.cron.clone(),
            s.job.job_type.clone(),
            next_tick(s),
            s.last_job_id
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
        ]);
    }
    table.print("no schedules");
    if list.returned < list.total {
        println!(
            "({} of {} schedules from offset {}; use --limit/--offset for more)",
            list.returned, list.total, list.offset
        );
    }
    Ok(exit::OK)
}
