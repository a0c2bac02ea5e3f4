//! Paging of the list RPCs (ListVolumes, ListSnapshots), as the CSI spec has it: a
//! token is one this plugin handed out (else ABORTED), `max_entries` 0 means all, and
//! `next_token` is empty on the last page. The token is the index of the page's first
//! entry in the sorted list.

use tonic::Status;

/// Where a page starts and how long it may be, read off a request before the list is made.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    start: usize,
    max: usize,
}

impl Page {
    pub fn of(starting_token: &str, max_entries: i32) -> Result<Page, Status> {
        if max_entries < 0 {
            return Err(super::status::invalid("max_entries is negative"));
        }
        let start = if starting_token.is_empty() {
            0
        } else {
            starting_token.parse().map_err(|_| {
                Status::aborted(format!(
                    "starting_token {starting_token:?} is not one of ours"
                ))
            })?
        };
        let max = if max_entries == 0 {
            usize::MAX
        } else {
            max_entries as usize
        };
        Ok(Page { start, max })
    }

    /// This page of `all` (sorted by the caller) and the next page's token; `what`
    /// names the entries in the refusal of a token past the end.
    pub fn take<T>(self, all: Vec<T>, what: &str) -> Result<(Vec<T>, String), Status> {
        let total = all.len();
        if self.start > total {
            return Err(Status::aborted(format!(
                "starting_token {} is past the {total} {what}",
                self.start
            )));
        }
        let page: Vec<T> = all.into_iter().skip(self.start).take(self.max).collect();
        let next = self.start + page.len();
        let token = if next < total {
            next.to_string()
        } else {
            String::new()
        };
        Ok((page, token))
    }
}
