//! Who may connect. Without a password every client is let in (the endpoint binds to
//! 127.0.0.1 unless told otherwise); with one, clients authenticate with SCRAM-SHA-256, as a
//! PostgreSQL server does by default, and the password never crosses the wire.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion_postgres::pgwire::api::auth::noop::NoopStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::SASLAuthStartupHandler;
use datafusion_postgres::pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use datafusion_postgres::pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use datafusion_postgres::pgwire::api::{ClientInfo, PgWireServerHandlers};
use datafusion_postgres::pgwire::error::{PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use futures::Sink;

/// SCRAM's iteration count: PostgreSQL's default.
const ITERATIONS: usize = 4096;

/// The credentials clients must give.
#[derive(Clone)]
pub struct Credentials {
    /// The user name, or any when `None`.
    pub user: Option<String>,
    /// The password.
    pub password: String,
}

impl Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Secret(Credentials);

#[async_trait]
impl AuthSource for Secret {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        tracing::debug!(user, database = ?login.database(), "password asked for");
        if self.0.user.as_deref().is_some_and(|u| u != user) {
            return Err(PgWireError::InvalidPassword(user.to_string()));
        }
        let salt: [u8; 16] = rand::random();
        let salted = gen_salted_password(&self.0.password, &salt, ITERATIONS);
        Ok(Password::new(Some(salt.to_vec()), salted))
    }
}

/// Lets every client in.
pub(crate) struct Open;

impl NoopStartupHandler for Open {}

/// The startup phase: open, or SCRAM-SHA-256.
pub(crate) enum Startup {
    Open(Open),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

impl Startup {
    pub(crate) fn new(credentials: Option<Credentials>) -> Self {
        match credentials {
            None => Startup::Open(Open),
            Some(c) => {
                let mut scram = ScramAuth::new(Arc::new(Secret(c)));
                scram.set_iterations(ITERATIONS);
                Startup::Scram(
                    SASLAuthStartupHandler::new(
                        Arc::new(DefaultServerParameterProvider::default()),
                    )
                    .with_scram(scram),
                )
            }
        }
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self {
            Startup::Open(h) => h.on_startup(client, message).await,
            Startup::Scram(h) => h.on_startup(client, message).await,
        }
    }
}

/// The handlers of every connection: queries by DataFusion, startup as configured.
pub(crate) struct Handlers {
    pub(crate) service: Arc<crate::session::Service>,
    pub(crate) credentials: Option<Credentials>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::SimpleQueryHandler> {
        Arc::clone(&self.service)
    }

    fn extended_query_handler(
        &self,
    ) -> Arc<impl datafusion_postgres::pgwire::api::query::ExtendedQueryHandler> {
        Arc::clone(&self.service)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        // Asked for once per connection: a SCRAM exchange keeps its state in the handler.
        Arc::new(Startup::new(self.credentials.clone()))
    }
}
