//! The Lua scripts behind every multi-key operation, and running them with `EVALSHA`.
//!
//! Each script is one atomic step on the server, so a gateway that dies mid-operation never
//! leaves a half-done move (a reference both pending and claimed, or in neither). Scripts are
//! deterministic: receipts and timestamps come in as arguments, never from the server's clock
//! or random generator.

use fred::prelude::{Client, FromValue, LuaInterface};

use super::{Connection, map_err};
use daef_core::Result;

/// One script: its source and the SHA-1 the server knows it by.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    name: &'static str,
    lua: &'static str,
    sha: String,
}

/// Which script to run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Claim,
    Ack,
    Nack,
    RequeueExpired,
    DeadLetter,
    RequeueDead,
    RateLimit,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Claim,
        Op::Ack,
        Op::Nack,
        Op::RequeueExpired,
        Op::DeadLetter,
        Op::RequeueDead,
        Op::RateLimit,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Claim => "claim",
            Op::Ack => "ack",
            Op::Nack => "nack",
            Op::RequeueExpired => "requeue_expired",
            Op::DeadLetter => "dead_letter",
            Op::RequeueDead => "requeue_dead",
            Op::RateLimit => "rate_limit",
        }
    }

    fn lua(self) -> &'static str {
        match self {
            Op::Claim => include_str!("scripts/claim.lua"),
            Op::Ack => include_str!("scripts/ack.lua"),
            Op::Nack => include_str!("scripts/nack.lua"),
            Op::RequeueExpired => include_str!("scripts/requeue_expired.lua"),
            Op::DeadLetter => include_str!("scripts/dead_letter.lua"),
            Op::RequeueDead => include_str!("scripts/requeue_dead.lua"),
            Op::RateLimit => include_str!("scripts/rate_limit.lua"),
        }
    }
}

/// Every script, loaded.
#[derive(Clone, Debug)]
pub(crate) struct Scripts {
    /// Indexed by `Op as usize`.
    scripts: Vec<Script>,
}

impl Scripts {
    /// `SCRIPT LOAD`s every script, which also proves the server answers and runs Lua.
    pub(crate) async fn load(client: &Client) -> std::result::Result<Self, fred::error::Error> {
        let mut scripts = Vec::with_capacity(Op::ALL.len());
        for op in Op::ALL {
            let sha: String = client.script_load(op.lua()).await?;
            scripts.push(Script {
                name: op.name(),
                lua: op.lua(),
                sha,
            });
        }
        Ok(Self { scripts })
    }

    fn get(&self, op: Op) -> &Script {
        &self.scripts[op as usize]
    }
}

impl Connection {
    /// Runs `op` with `EVALSHA`. The script cache is empty after a server restart or a
    /// `SCRIPT FLUSH`; on `NOSCRIPT` the script is loaded again and run once more. (Running it
    /// twice is safe: the first attempt did nothing.)
    pub(crate) async fn eval<R: FromValue>(
        &self,
        op: Op,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<R> {
        self.ensure_connected()?;
        let script = self.scripts.get(op);
        match self
            .client
            .evalsha::<R, _, _, _>(script.sha.as_str(), keys.clone(), args.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                tracing::info!(
                    script = script.name,
                    "redis lost its script cache; reloading"
                );
                let _: String = self.client.script_load(script.lua).await.map_err(map_err)?;
                self.client
                    .evalsha(script.sha.as_str(), keys, args)
                    .await
                    .map_err(map_err)
            }
            result => result.map_err(map_err),
        }
    }
}
