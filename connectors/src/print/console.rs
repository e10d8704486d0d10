//! The process's terminal output, shared by everything that prints while jobs run: rows
//! (the `print` connector, `rstreams run`'s SELECT results) scroll above a block that is
//! redrawn in place at the bottom (the progress line, or a live table). The block lives on
//! stdout when it is a terminal, else on stderr when that is one; without a terminal there is
//! no block and rows are written as they come.

use std::io::{IsTerminal, Write};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// The shared console of this process.
pub fn console() -> &'static Console {
    static CONSOLE: LazyLock<Console> = LazyLock::new(|| {
        let block_on = if std::io::stdout().is_terminal() {
            Some(Stream::Stdout)
        } else if std::io::stderr().is_terminal() {
            Some(Stream::Stderr)
        } else {
            None
        };
        Console {
            state: Mutex::new(State::default()),
            block_on,
            stderr_tty: std::io::stderr().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
        }
    });
    &CONSOLE
}

/// An output stream of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn write(self, text: &str) {
        // Output to a closed pipe or a full disk is not worth failing a job over.
        let _ = match self {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
        };
    }
}

#[derive(Debug, Default)]
struct State {
    /// The block drawn at the bottom, and how many lines it took on screen.
    block: String,
    drawn: usize,
}

/// Terminal output that keeps a redrawn block under scrolling rows.
#[derive(Debug)]
pub struct Console {
    state: Mutex<State>,
    block_on: Option<Stream>,
    stdout_tty: bool,
    stderr_tty: bool,
}

impl Console {
    /// The terminal the block is drawn on, if any.
    pub fn terminal(&self) -> Option<Stream> {
        self.block_on
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while printing leaves nothing half-updated that matters: keep printing.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `text` (whole lines) to `stream`, above the block if `stream` shows on the
    /// block's terminal.
    pub fn print(&self, text: &str, stream: Stream) {
        let mut state = self.lock();
        let tty = match stream {
            Stream::Stdout => self.stdout_tty,
            Stream::Stderr => self.stderr_tty,
        };
        let Some(block_on) = self.block_on.filter(|_| tty && state.drawn > 0) else {
            stream.write(text);
            return;
        };
        if block_on == stream {
            let mut all = erase(state.drawn);
            all.push_str(text);
            all.push_str(&state.block);
            stream.write(&all);
        } else {
            block_on.write(&erase(state.drawn));
            stream.write(text);
            block_on.write(&state.block);
        }
        state.drawn = state.block.lines().count();
    }

    /// Replaces the block at the bottom (on a terminal only; a no-op otherwise). Lines should
    /// fit the terminal's width: a wrapped line would be erased only in part.
    pub fn set_block(&self, block: String) {
        let Some(stream) = self.block_on else {
            return;
        };
        let mut state = self.lock();
        let mut text = erase(state.drawn);
        text.push_str(&block);
        stream.write(&text);
        state.drawn = block.lines().count();
        state.block = block;
    }

    /// Leaves the block on screen as it is and stops redrawing it.
    pub fn keep_block(&self) {
        let mut state = self.lock();
        state.block.clear();
        state.drawn = 0;
    }

    /// Removes the block from the screen.
    pub fn clear_block(&self) {
        self.set_block(String::new());
    }
}

/// ANSI: up `lines` lines to the block's first line, then clear to the end of the screen.
fn erase(lines: usize) -> String {
    match lines {
        0 => String::new(),
        n => format!("\x1b[{n}F\x1b[J"),
    }
}
