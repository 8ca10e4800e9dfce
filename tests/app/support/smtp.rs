//! A real SMTP server on loopback for the e-mail tests: Python's aiosmtpd (installed by `.ci/run`
//! and `scripts/test`), run as a child process that is killed when the sink is dropped. Each
//! message it accepts is written to its folder as `<n>.eml` with a `<n>.json` beside it, parsed by
//! Python's `email` package: subject, Message-ID, the plain-text and HTML bodies, attachments.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the sink answers each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 250: accepted and written to the folder.
    Accept,
    /// 550: refused for good (a permanent failure).
    Reject,
    /// 451: refused for now (a transient failure).
    Defer,
}

impl Mode {
    fn arg(self) -> &'static str {
        match self {
            Mode::Accept => "accept",
            Mode::Reject => "reject",
            Mode::Defer => "defer",
        }
    }
}

const SINK: &str = r#"
import email, json, os, signal, sys, threading
from email import policy
from aiosmtpd.controller import Controller

port, folder, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
count = [0]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        if mode == "reject":
            return "550 5.7.1 Delivery not authorised, message refused"
        if mode == "defer":
            return "451 4.3.0 Mailbox busy, try again later"
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=policy.default)
        def body(kind):
            part = msg.get_body(preferencelist=(kind,))
            return part.get_content() if part is not None else None
        attachments = []
        for part in msg.iter_attachments():
            content = part.get_content()
            if isinstance(content, bytes):
                content = content.decode("utf-8")
            attachments.append({"filename": part.get_filename(), "content_type": part.get_content_type(), "content": content})
        record = {
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "envelope_from": envelope.mail_from,
            "envelope_to": list(envelope.rcpt_tos),
            "content_type": msg.get_content_type(),
            "text": body("plain"),
            "html": body("html"),
            "attachments": attachments,
        }
        with lock:
            count[0] += 1
            name = "%06d" % count[0]
        with open(os.path.join(folder, name + ".eml"), "wb") as f:
            f.write(raw)
        tmp = os.path.join(folder, name + ".json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(folder, name + ".json"))
        return "250 2.0.0 Message accepted for delivery"

controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
controller.stop()
"#;

pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
}

/// A loopback port nobody listens on just now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().unwrap().port()
}

/// `smtp://127.0.0.1:<port>`: plain SMTP, as lettre's `SmtpTransport::from_url` reads it.
pub fn url(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}")
}

impl SmtpSink {
    pub fn start(mode: Mode) -> SmtpSink {
        Self::start_on(free_port(), mode)
    }

    /// Starts the sink on `port` and waits until it answers.
    pub fn start_on(port: u16, mode: Mode) -> SmtpSink {
        let dir = std::env::temp_dir().join(format!("cpis-smtp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("create the sink's folder");
        let script = dir.join("sink.py");
        std::fs::write(&script, SINK).expect("write the sink's script");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(&dir)
            .arg(mode.arg())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start python3 (the SMTP sink needs python3 with aiosmtpd: pip install aiosmtpd)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().expect("poll the sink") {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the SMTP sink exited ({status}); is aiosmtpd installed (pip install aiosmtpd)?\n{err}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "the SMTP sink did not start listening on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        SmtpSink { port, dir, child }
    }

    pub fn url(&self) -> String {
        url(self.port)
    }

    /// Every message accepted so far, in the order received.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .expect("read the sink's folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read a message")).expect("JSON"))
            .collect()
    }

    /// The messages sent to one address.
    pub fn messages_to(&self, address: &str) -> Vec<serde_json::Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["envelope_to"].as_array().is_some_and(|to| to.iter().any(|a| a == address)))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
