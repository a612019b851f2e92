//! Unit tests of the bounce-message parser.

use super::*;


