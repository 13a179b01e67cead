//! A request's arguments without copies: ranges of the buffer it was read into. A read's data
//! commands are batched with their arguments as such ranges, and each command gets them as
//! byte slices of that buffer (a pipelined SET used to allocate four vectors for its
//! arguments alone).

use std::borrow::Cow;
use std::ops::Range;

use super::command::DataFn;
use crate::node::Purpose;

/// Command names up to this length are upper-cased on the stack; the longest Redis command
/// name is shorter, and a longer one is unknown anyway (it is upper-cased on the heap).
pub const NAME_INLINE_MAX: usize = 32;

/// Arguments of a batch up to this many are handed to the commands from the stack.
const ARGS_INLINE_MAX: usize = 16;

/// One decoded request: its arguments (the command's name first) as ranges of `bytes`.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub bytes: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl Request<'_> {
    /// Argument `index` (0 is the command's name).
    pub fn arg(&self, index: usize) -> Option<&[u8]> {
        self.ranges.get(index).map(|range| &self.bytes[range.clone()])
    }

    /// The arguments after the name, copied (for the commands that keep them).
    pub fn owned_args(&self) -> Vec<Vec<u8>> {
        self.ranges.iter().skip(1).map(|range| self.bytes[range.clone()].to_vec()).collect()
    }

    /// An inline request's words joined into one buffer, with their ranges in it.
    pub fn join(words: &[Vec<u8>]) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut joined = Vec::with_capacity(words.iter().map(Vec::len).sum());
        let mut ranges = Vec::with_capacity(words.len());
        for word in words {
            ranges.push(joined.len()..joined.len() + word.len());
            joined.extend_from_slice(word);
        }
        (joined, ranges)
    }
}

/// `name` in ASCII upper case (as Redis matches command names), in `buffer` when it fits.
pub fn command_name<'a>(name: &[u8], buffer: &'a mut [u8; NAME_INLINE_MAX]) -> Cow<'a, str> {
    let Some(inline) = buffer.get_mut(..name.len()) else {
        return Cow::Owned(super::command::upper(name));
    };
    inline.copy_from_slice(name);
    inline.make_ascii_uppercase();
    match std::str::from_utf8(inline) {
        Ok(name) => Cow::Borrowed(name),
        Err(_) => Cow::Owned(super::command::upper(name)),
    }
}

/// Data commands of one read, run together in one session (at most `REDIS_BATCH_MAX`).
#[derive(Default)]
pub struct Batch {
    /// Each command's name (a static label for metrics), what runs it, and which of `args`
    /// are its arguments.
    pub commands: Vec<(&'static str, DataFn, Range<usize>)>,
    /// The arguments of every command, as ranges of the buffer the batch was read from.
    args: Vec<Range<usize>>,
    /// Whether a command may write.
    pub writes: bool,
}

impl Batch {
    /// Adds a command whose arguments (after its name) are `args`.
    pub fn push(
        &mut self,
        kind: &'static str,
        command: DataFn,
        purpose: Purpose,
        args: &[Range<usize>],
    ) {
        let start = self.args.len();
        self.args.extend_from_slice(args);
        self.commands.push((kind, command, start..self.args.len()));
        self.writes |= purpose == Purpose::Write;
    }

    /// Number of commands batched.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Empties the batch, keeping its vectors.
    pub fn clear(&mut self) {
        self.commands.clear();
        self.args.clear();
        self.writes = false;
    }

    /// The arguments `at` (a command's range) as slices of `bytes`, collected (for a command
    /// that leaves the batch's session).
    pub fn args_of<'a>(&self, bytes: &'a [u8], at: Range<usize>) -> Vec<&'a [u8]> {
        self.args[at].iter().map(|range| &bytes[range.clone()]).collect()
    }

    /// Calls `run` with the commands and every argument as a slice of `bytes` (each
    /// command's range indexes those).
    pub fn with_args<R>(
        &self,
        bytes: &[u8],
        run: impl FnOnce(&[(&'static str, DataFn, Range<usize>)], &[&[u8]]) -> R,
    ) -> R {
        let slice = |range: &Range<usize>| &bytes[range.clone()];
        if self.args.len() <= ARGS_INLINE_MAX {
            let mut inline: [&[u8]; ARGS_INLINE_MAX] = [&[]; ARGS_INLINE_MAX];
            for (slot, range) in inline.iter_mut().zip(&self.args) {
                *slot = slice(range);
            }
            return run(&self.commands, &inline[..self.args.len()]);
        }
        let args: Vec<&[u8]> = self.args.iter().map(slice).collect();
        run(&self.commands, &args)
    }
}
