//! For the client commands' tests: a stand-in for the binary's parser with one command
//! group under it, so each group's tests parse real command lines without declaring a
//! parser of their own; and capturing what a printing function writes.

use std::io::{self, Write};

use clap::{Args, Command};

use super::ClientOptions;

/// `llmops` with the shared client options and `T` as its subcommand `name`, with
/// `--version` propagated to every subcommand (the stricter case for subcommands that
/// take a `--version` flag of their own).
pub(crate) fn command<T: Args>(name: &'static str) -> Command {
    let top = Command::new("llmops")
        .version("0.0.0")
        .propagate_version(true)
        .subcommand_required(true)
        .subcommand(T::augment_args(Command::new(name)));
    ClientOptions::augment_args(top)
}

/// Parses `llmops <name> <args>...` into the group's arguments.
pub(crate) fn parse<T: Args>(name: &'static str, args: &[&str]) -> Result<T, clap::Error> {
    let argv = ["llmops", name].into_iter().chain(args.iter().copied());
    let matches = command::<T>(name).try_get_matches_from(argv)?;
    let (_, group) = matches
        .subcommand()
        .expect("the group's subcommand is required");
    T::from_arg_matches(group)
}

/// What `write` writes, as a string.
pub(crate) fn text(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
    let mut buffer = Vec::new();
    write(&mut buffer).unwrap();
    String::from_utf8(buffer).unwrap()
}

/// Asserts that a command line was refused for the argument `naming` (its flag or
/// `<VALUE>` name appears in the error), and not because an argument is unknown: a test
/// of a refusal must fail when the flag it means is renamed.
#[track_caller]
pub(crate) fn assert_refused<T: std::fmt::Debug>(parsed: Result<T, clap::Error>, naming: &str) {
    let err = match parsed {
        Ok(parsed) => panic!("accepted, expected a refusal naming {naming}: {parsed:?}"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert_ne!(
        err.kind(),
        clap::error::ErrorKind::UnknownArgument,
        "refused for an unknown argument, not for {naming}: {message}"
    );
    assert!(
        message.contains(naming),
        "the refusal does not name {naming}: {message}"
    );
}
