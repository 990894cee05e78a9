//! An SMTP client over lettre's connection: a pool of open sessions, and one transaction per
//! message that asks for each recipient apart, so a refused address does not sink the others.
//!
//! lettre's pooled transport aborts the whole message when any `RCPT TO` is refused and cannot
//! say which recipients were accepted; this client can. A pooled session the server closed while
//! idle is noticed (a `NOOP` before reuse) or, when the close races the first command, the
//! message is tried once more on a new session: nothing was sent on the dead one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use parking_lot::Mutex;
use serde::Serialize;
use stagehand_core::ProcessError;
use tokio::sync::Semaphore;

use super::capped::{Budget, CappedStream};

/// A pooled session idle for less than this is reused without a NOOP first.
const FRESH: Duration = Duration::from_secs(1);

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`, port 465).
    Wrapper,
    /// STARTTLS, required.
    StartTls,
    /// STARTTLS when the server offers it.
    Opportunistic,
    /// Plain text (a local relay).
    None,
}

/// Where and how to connect.
#[derive(Clone)]
pub struct SmtpConfig {
    /// The server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its port.
    pub port: u16,
    /// How the connection is secured.
    pub security: Security,
    /// Login, when the server wants one.
    pub credentials: Option<Credentials>,
    /// Sessions kept open at most (and messages in flight at most).
    pub pool_max: u32,
    /// How long an unused session is kept.
    pub idle: Duration,
    /// How long one step (connect, a command, the message) may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("credentials", &self.credentials.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A recipient the server would not take.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Refusal {
    /// The address.
    pub address: String,
    /// The SMTP reply code.
    pub code: String,
    /// The server's words.
    pub message: String,
}

/// What the server did with a message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivery {
    /// Recipients the server accepted.
    pub accepted: Vec<String>,
    /// Recipients it refused for good (5xx).
    pub refused: Vec<Refusal>,
    /// Its reply to the message itself.
    pub response: String,
}

/// A pool of SMTP sessions to one server.
pub struct SmtpClient {
    config: SmtpConfig,
    hello: ClientId,
    idle: Mutex<Vec<Session>>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An open session, and the read budget of its stream (none for `smtps://`, whose socket
/// lettre opens).
struct Session {
    conn: AsyncSmtpConnection,
    budget: Option<Budget>,
    since: Instant,
}

impl Session {
    fn refill(&self) {
        if let Some(budget) = &self.budget {
            budget.refill();
        }
    }
}

/// Why one try failed.
enum Failure {
    /// The session broke (I/O, timeout, TLS) before the message was handed over: another
    /// session may do.
    Link(String),
    /// The job's verdict.
    Job(ProcessError),
}

fn describe(err: &lettre::transport::smtp::Error) -> String {
    err.to_string()
}

/// A failed command as the job's verdict: 4xx and lost links retry, 5xx does not. A 421 is
/// the server closing the session (idle too long, shutting down): a lost link.
fn verdict(step: &str, err: lettre::transport::smtp::Error) -> Failure {
    if err.status().is_some_and(|code| code.to_string() == "421") {
        Failure::Link(format!("SMTP {step}: {}", describe(&err)))
    } else if err.is_permanent() {
        Failure::Job(ProcessError::unrecoverable(format!(
            "SMTP {step} refused: {}",
            describe(&err)
        )))
    } else if err.is_transient() {
        Failure::Job(ProcessError::retry(format!(
            "SMTP {step} deferred: {}",
            describe(&err)
        )))
    } else {
        Failure::Link(format!("SMTP {step}: {}", describe(&err)))
    }
}

impl SmtpClient {
    /// A client for `config`; it connects when first used.
    pub fn new(config: SmtpConfig) -> SmtpClient {
        let slots = Arc::new(Semaphore::new(config.pool_max.max(1) as usize));
        SmtpClient {
            config,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            slots,
        }
    }

    async fn step<T>(
        &self,
        what: &str,
        work: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<T, Failure> {
        match tokio::time::timeout(self.config.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(verdict(what, err)),
            Err(_) => Err(Failure::Link(format!(
                "SMTP {what}: no answer within {} ms",
                self.config.timeout.as_millis()
            ))),
        }
    }

    fn tls(&self) -> Result<TlsParameters, Failure> {
        TlsParameters::new(self.config.host.clone())
            .map_err(|e| Failure::Link(format!("SMTP TLS setup: {e}")))
    }

    async fn connect(&self) -> Result<Session, Failure> {
        let server = (self.config.host.as_str(), self.config.port);
        let mut budget = None;
        let mut conn = if self.config.security == Security::Wrapper {
            let tls = self.tls()?;
            self.step(
                "connect",
                AsyncSmtpConnection::connect_tokio1(
                    server,
                    Some(self.config.timeout),
                    &self.hello,
                    Some(tls),
                    None,
                ),
            )
            .await?
        } else {
            // Our own socket, with Nagle's algorithm off: lettre writes a message's end
            // (`.`) apart from its body, and with Nagle on that waits for the server's
            // delayed ACK, some 40 ms per message.
            let tcp = match tokio::time::timeout(
                self.config.timeout,
                tokio::net::TcpStream::connect(server),
            )
            .await
            {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return Err(Failure::Link(format!("SMTP connect: {e}"))),
                Err(_) => return Err(Failure::Link("SMTP connect: timed out".into())),
            };
            let _ = tcp.set_nodelay(true);
            let reads = Budget::new();
            budget = Some(reads.clone());
            let stream = CappedStream::new(tcp, reads);
            self.step(
                "greeting",
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello),
            )
            .await?
        };
        let starttls = match self.config.security {
            Security::StartTls => true,
            Security::Opportunistic => conn.can_starttls(),
            Security::Wrapper | Security::None => false,
        };
        if starttls {
            let tls = self.tls()?;
            self.step("STARTTLS", conn.starttls(tls, &self.hello))
                .await?;
        }
        if let Some(credentials) = &self.config.credentials {
            self.step(
                "AUTH",
                conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials),
            )
            .await?;
        }
        Ok(Session {
            conn,
            budget,
            since: Instant::now(),
        })
    }

    /// An open session: an idle one that still answers, or a new one. Says whether it was
    /// reused.
    async fn session(&self) -> Result<(Session, bool), Failure> {
        loop {
            let candidate = self.idle.lock().pop();
            let Some(mut session) = candidate else {
                break;
            };
            session.refill();
            let since = session.since;
            if since.elapsed() > self.config.idle || session.conn.has_broken() {
                tokio::spawn(async move { session.conn.abort().await });
                continue;
            }
            // A session used within the last second is taken as it is (if it died meanwhile,
            // `send` tries a new one); an older one must answer a NOOP first.
            if since.elapsed() < FRESH
                || matches!(
                    tokio::time::timeout(self.config.timeout, session.conn.test_connected()).await,
                    Ok(true)
                )
            {
                session.refill();
                return Ok((session, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    fn give_back(&self, mut session: Session) {
        if !session.conn.has_broken() {
            session.since = Instant::now();
            self.idle.lock().push(session);
        }
    }

    /// Sends `message` from `from` to `recipients`.
    pub async fn send(
        &self,
        from: Option<&Address>,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<Delivery, ProcessError> {
        let _slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| ProcessError::retry("the SMTP client is closed"))?;
        let mut tried_fresh = false;
        loop {
            let (mut session, reused) = match self.session().await {
                Ok(session) => session,
                Err(Failure::Job(err)) => return Err(err),
                Err(Failure::Link(reason)) => return Err(ProcessError::retry(reason)),
            };
            tried_fresh |= !reused;
            session.refill();
            match self
                .transact(&mut session.conn, from, recipients, message)
                .await
            {
                Ok(delivery) => {
                    self.give_back(session);
                    return Ok(delivery);
                }
                Err((Failure::Job(err), clean)) => {
                    if clean {
                        self.give_back(session);
                    } else {
                        session.conn.abort().await;
                    }
                    return Err(err);
                }
                Err((Failure::Link(reason), handed_over)) => {
                    session.conn.abort().await;
                    // A session that died before the message was handed over sent nothing:
                    // try once on a new one (a pooled session the server closed while idle).
                    if handed_over || tried_fresh {
                        return Err(ProcessError::retry(reason));
                    }
                    tracing::debug!(%reason, "pooled SMTP session lost: trying a new one");
                }
            }
        }
    }

    /// One transaction. On failure, says for a verdict whether the session is still clean
    /// (reusable), and for a lost link whether the message may have been handed over.
    async fn transact(
        &self,
        conn: &mut AsyncSmtpConnection,
        from: Option<&Address>,
        recipients: &[Address],
        message: &[u8],
    ) -> Result<Delivery, (Failure, bool)> {
        let mut options = Vec::new();
        // Raw UTF-8 in the envelope or in the header (a `Reply-To` address, say) needs
        // SMTPUTF8; in the body, 8BITMIME.
        let head = message
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(message, |end| &message[..end]);
        let non_ascii = from.is_some_and(|a| !a.to_string().is_ascii())
            || recipients.iter().any(|a| !a.to_string().is_ascii())
            || !head.is_ascii();
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err((
                    Failure::Job(ProcessError::unrecoverable(
                        "an address or header is not ASCII and the server does not take SMTPUTF8",
                    )),
                    true,
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err((
                    Failure::Job(ProcessError::unrecoverable(
                        "the message is not 7-bit and the server does not take 8BITMIME",
                    )),
                    true,
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // A lost link before DATA: nothing was handed over, and the session is done.
        let link = |f: Failure| (f, false);
        if let Err(f) = self
            .step("MAIL FROM", conn.command(Mail::new(from.cloned(), options)))
            .await
        {
            let clean = matches!(f, Failure::Job(_));
            let rset = if clean { self.reset(conn).await } else { false };
            return Err(match f {
                Failure::Job(_) => (f, rset),
                Failure::Link(_) => link(f),
            });
        }
        let mut accepted = Vec::new();
        let mut refused = Vec::new();
        let mut deferred = Vec::new();
        for rcpt in recipients {
            match conn.command(Rcpt::new(rcpt.clone(), vec![])).await {
                Ok(_) => accepted.push(rcpt.to_string()),
                Err(err) if err.is_permanent() || err.is_transient() => {
                    let refusal = Refusal {
                        address: rcpt.to_string(),
                        code: err.status().map(|c| c.to_string()).unwrap_or_default(),
                        message: describe(&err),
                    };
                    if err.is_permanent() {
                        refused.push(refusal);
                    } else {
                        deferred.push(refusal);
                    }
                }
                Err(err) => return Err(link(verdict("RCPT TO", err))),
            }
        }
        let list = |r: &[Refusal]| {
            r.iter()
                .map(|r| format!("{} ({})", r.address, r.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !deferred.is_empty() {
            // Nothing is sent until every recipient can be: a retry sends to all at once.
            let clean = self.reset(conn).await;
            return Err((
                Failure::Job(ProcessError::retry(format!(
                    "SMTP deferred recipients: {}",
                    list(&deferred)
                ))),
                clean,
            ));
        }
        if accepted.is_empty() {
            let clean = self.reset(conn).await;
            return Err((
                Failure::Job(ProcessError::unrecoverable(format!(
                    "SMTP refused every recipient: {}",
                    list(&refused)
                ))),
                clean,
            ));
        }
        if let Err(f) = self.step("DATA", conn.command(Data)).await {
            return Err(match f {
                Failure::Job(_) => {
                    let clean = self.reset(conn).await;
                    (f, clean)
                }
                Failure::Link(_) => link(f),
            });
        }
        match self.step("message", conn.message(message)).await {
            Ok(response) => Ok(Delivery {
                accepted,
                refused,
                response: format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                ),
            }),
            // The message was on the wire: whether it was taken is unknown.
            Err(Failure::Link(reason)) => Err((Failure::Link(reason), true)),
            Err(f) => Err((f, true)),
        }
    }

    /// Ends a transaction the server refused part of; says whether the session is usable.
    async fn reset(&self, conn: &mut AsyncSmtpConnection) -> bool {
        matches!(
            tokio::time::timeout(self.config.timeout, conn.command(Rset)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_server_that_never_ends_a_line_is_cut_off_at_the_budget() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listen");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = Arc::clone(&sent);
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            socket.write_all(b"220 ").await.expect("greeting");
            let chunk = vec![b'x'; 64 * 1024];
            while socket.write_all(&chunk).await.is_ok() {
                counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        let client = SmtpClient::new(SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            credentials: None,
            pool_max: 1,
            idle: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        });
        let to: Vec<Address> = vec!["a@shop.test".parse().expect("to")];
        let err = client
            .send(None, &to, b"Subject: x\r\n\r\nbody\r\n")
            .await
            .expect_err("no greeting ever ends");
        assert!(
            !err.is_unrecoverable(),
            "a server fault is worth a retry: {err}"
        );
        let sent = sent.load(std::sync::atomic::Ordering::Relaxed);
        // The client stopped reading near the budget (what the socket buffers hold besides).
        assert!(
            sent < 16 * super::super::capped::BUDGET,
            "read {sent} bytes"
        );
    }
}
