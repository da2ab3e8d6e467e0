//! The scripted sequence of lakeFS API calls the differential test sends to both servers.
//! `{repo}`, `{ns}` and captured values (`{c1}`, ...) are filled in per server.

/// How a call authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth {
    /// The admin keys.
    Admin,
    /// The admin key id with a wrong secret.
    WrongSecret,
    /// No credentials at all.
    None,
}

/// The body of a call.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// None.
    Empty,
    /// A JSON template.
    Json(&'static str),
    /// Raw bytes (an object upload).
    Bytes(&'static [u8]),
}

/// One call of the script.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Its name in the table and in the list of kept divergences.
    pub name: &'static str,
    /// GET, POST, PUT or DELETE.
    pub method: &'static str,
    /// The path under `/api/v1` (a template).
    pub path: &'static str,
    /// Credentials.
    pub auth: Auth,
    /// Extra headers.
    pub headers: &'static [(&'static str, &'static str)],
    /// The body.
    pub body: Body,
    /// Values of the answer kept for later calls: (variable, JSON pointer).
    pub capture: &'static [(&'static str, &'static str)],
}

const fn step(name: &'static str, method: &'static str, path: &'static str, body: Body) -> Step {
    Step {
        name,
        method,
        path,
        auth: Auth::Admin,
        headers: &[],
        body,
        capture: &[],
    }
}
const fn get(name: &'static str, path: &'static str) -> Step {
    step(name, "GET", path, Body::Empty)
}
const fn delete(name: &'static str, path: &'static str) -> Step {
    step(name, "DELETE", path, Body::Empty)
}
const fn post(name: &'static str, path: &'static str, json: &'static str) -> Step {
    step(name, "POST", path, Body::Json(json))
}
const fn put(name: &'static str, path: &'static str, json: &'static str) -> Step {
    step(name, "PUT", path, Body::Json(json))
}
const fn upload(name: &'static str, path: &'static str, bytes: &'static [u8]) -> Step {
    step(name, "POST", path, Body::Bytes(bytes))
}
const fn commit(name: &'static str, branch_path: &'static str, json: &'static str) -> Step {
    post(name, branch_path, json)
}

impl Step {
    const fn capture(mut self, capture: &'static [(&'static str, &'static str)]) -> Self {
        self.capture = capture;
        self
    }
    const fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }
    const fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
}

const REPO: &str =
    "{\"name\":\"{repo}\",\"storage_namespace\":\"{ns}\",\"default_branch\":\"main\"}";

/// The script, in order.
pub const SCRIPT: &[Step] = &[
    get("healthcheck", "/healthcheck"),
    // Repositories and their metadata.
    post("repo create", "/repositories", REPO),
    post("repo create again", "/repositories", REPO),
    post(
        "repo create, bad name",
        "/repositories",
        "{\"name\":\"Bad_Name!\",\"storage_namespace\":\"{ns}-bad\",\"default_branch\":\"main\"}",
    ),
    get("repo get", "/repositories/{repo}"),
    get("repo get, missing", "/repositories/{repo}-missing"),
    post(
        "repo metadata set",
        "/repositories/{repo}/metadata",
        "{\"metadata\":{\"team\":\"vision\"}}",
    ),
    get("repo metadata get", "/repositories/{repo}/metadata"),
    get("auth, wrong secret", "/repositories/{repo}").auth(Auth::WrongSecret),
    get("auth, none", "/repositories/{repo}").auth(Auth::None),
    // Branches.
    post(
        "branch create",
        "/repositories/{repo}/branches",
        "{\"name\":\"dev\",\"source\":\"main\"}",
    ),
    post(
        "branch create again",
        "/repositories/{repo}/branches",
        "{\"name\":\"dev\",\"source\":\"main\"}",
    ),
    post(
        "branch create, missing source",
        "/repositories/{repo}/branches",
        "{\"name\":\"other\",\"source\":\"nope\"}",
    ),
    get("branch get", "/repositories/{repo}/branches/dev"),
    get("branch get, missing", "/repositories/{repo}/branches/nope"),
    get("branches list", "/repositories/{repo}/branches"),
    // Objects: uploads with checksums, stat, read, list with delimiter and paging.
    upload(
        "upload a/1",
        "/repositories/{repo}/branches/dev/objects?path=data/a/1.txt",
        b"one",
    ),
    upload(
        "upload a/2",
        "/repositories/{repo}/branches/dev/objects?path=data/a/2.txt",
        b"two",
    ),
    upload(
        "upload b/3",
        "/repositories/{repo}/branches/dev/objects?path=data/b/3.txt",
        b"three",
    ),
    upload(
        "upload top",
        "/repositories/{repo}/branches/dev/objects?path=data/top.txt",
        b"top",
    ),
    upload(
        "upload if-none-match, exists",
        "/repositories/{repo}/branches/dev/objects?path=data/a/1.txt",
        b"again",
    )
    .headers(&[("If-None-Match", "*")]),
    upload(
        "upload to a missing branch",
        "/repositories/{repo}/branches/nope/objects?path=x.txt",
        b"x",
    ),
    get(
        "stat",
        "/repositories/{repo}/refs/dev/objects/stat?path=data/a/1.txt",
    ),
    get(
        "stat, missing",
        "/repositories/{repo}/refs/dev/objects/stat?path=data/nope",
    ),
    get(
        "read",
        "/repositories/{repo}/refs/dev/objects?path=data/a/1.txt",
    ),
    get(
        "read, missing",
        "/repositories/{repo}/refs/dev/objects?path=data/nope",
    ),
    get(
        "list with delimiter",
        "/repositories/{repo}/refs/dev/objects/ls?prefix=data/&delimiter=/",
    ),
    get(
        "list page 1",
        "/repositories/{repo}/refs/dev/objects/ls?prefix=data/&amount=2",
    ),
    get(
        "list page 2",
        "/repositories/{repo}/refs/dev/objects/ls?prefix=data/&amount=2&after=data/a/2.txt",
    ),
    get("diff uncommitted", "/repositories/{repo}/branches/dev/diff"),
    // Commits with metadata, log, diff between refs.
    commit(
        "commit",
        "/repositories/{repo}/branches/dev/commits",
        "{\"message\":\"add data\",\"metadata\":{\"source\":\"differential\"}}",
    )
    .capture(&[("c1", "/id")]),
    commit(
        "commit, nothing to commit",
        "/repositories/{repo}/branches/dev/commits",
        "{\"message\":\"empty\"}",
    ),
    get("commit get", "/repositories/{repo}/commits/{c1}"),
    get("commit get, missing", "/repositories/{repo}/commits/{c1}0"),
    get("log", "/repositories/{repo}/refs/dev/commits"),
    get(
        "log, amount 1",
        "/repositories/{repo}/refs/dev/commits?amount=1",
    ),
    get("diff refs", "/repositories/{repo}/refs/main/diff/dev"),
    get(
        "diff clean branch",
        "/repositories/{repo}/branches/dev/diff",
    ),
    // Tags.
    post(
        "tag create",
        "/repositories/{repo}/tags",
        "{\"id\":\"v1\",\"ref\":\"dev\"}",
    ),
    post(
        "tag create again",
        "/repositories/{repo}/tags",
        "{\"id\":\"v1\",\"ref\":\"dev\"}",
    ),
    get("tag get", "/repositories/{repo}/tags/v1"),
    get("tags list", "/repositories/{repo}/tags"),
    get(
        "read at tag",
        "/repositories/{repo}/refs/v1/objects?path=data/b/3.txt",
    ),
    // Merges.
    post(
        "merge",
        "/repositories/{repo}/refs/dev/merge/main",
        "{\"message\":\"merge dev\"}",
    ),
    post(
        "merge, nothing to merge",
        "/repositories/{repo}/refs/dev/merge/main",
        "{}",
    ),
    post(
        "merge, missing source",
        "/repositories/{repo}/refs/nope/merge/main",
        "{}",
    ),
    upload(
        "upload staged on main",
        "/repositories/{repo}/branches/main/objects?path=staged.txt",
        b"staged",
    ),
    upload(
        "upload c on dev",
        "/repositories/{repo}/branches/dev/objects?path=data/c.txt",
        b"c",
    ),
    commit(
        "commit c on dev",
        "/repositories/{repo}/branches/dev/commits",
        "{\"message\":\"c\"}",
    )
    .capture(&[("c2", "/id")]),
    post(
        // lakeFS refuses it: "uncommitted changes (dirty branch)".
        "merge into a branch with uncommitted changes",
        "/repositories/{repo}/refs/dev/merge/main",
        "{}",
    ),
    get(
        "the uncommitted change is untouched",
        "/repositories/{repo}/branches/main/diff",
    ),
    get(
        "nothing was merged",
        "/repositories/{repo}/refs/main/objects?path=data/c.txt",
    ),
    commit(
        "commit the staged change",
        "/repositories/{repo}/branches/main/commits",
        "{\"message\":\"staged\"}",
    ),
    // A conflict, then the strategies.
    upload(
        "dev side of a conflict",
        "/repositories/{repo}/branches/dev/objects?path=data/top.txt",
        b"dev side",
    ),
    commit(
        "commit dev side",
        "/repositories/{repo}/branches/dev/commits",
        "{\"message\":\"dev side\"}",
    ),
    upload(
        "main side of a conflict",
        "/repositories/{repo}/branches/main/objects?path=data/top.txt",
        b"main side",
    ),
    commit(
        "commit main side",
        "/repositories/{repo}/branches/main/commits",
        "{\"message\":\"main side\"}",
    ),
    post(
        "merge with a conflict",
        "/repositories/{repo}/refs/dev/merge/main",
        "{}",
    ),
    post(
        "merge, unknown strategy",
        "/repositories/{repo}/refs/dev/merge/main",
        "{\"strategy\":\"nonsense\"}",
    ),
    post(
        "merge, source-wins",
        "/repositories/{repo}/refs/dev/merge/main",
        "{\"strategy\":\"source-wins\"}",
    ),
    get(
        "the source won",
        "/repositories/{repo}/refs/main/objects?path=data/top.txt",
    ),
    // Revert, cherry-pick.
    post(
        "revert a merge without parent",
        "/repositories/{repo}/branches/main/revert",
        "{\"ref\":\"main\"}",
    ),
    post(
        "revert the merge",
        "/repositories/{repo}/branches/main/revert",
        "{\"ref\":\"main\",\"parent_number\":1}",
    ),
    get(
        "reverted",
        "/repositories/{repo}/refs/main/objects?path=data/top.txt",
    ),
    upload(
        "upload d on dev",
        "/repositories/{repo}/branches/dev/objects?path=data/d.txt",
        b"d",
    ),
    commit(
        "commit d on dev",
        "/repositories/{repo}/branches/dev/commits",
        "{\"message\":\"d\"}",
    )
    .capture(&[("c3", "/id")]),
    post(
        "cherry-pick",
        "/repositories/{repo}/branches/main/cherry-pick",
        "{\"ref\":\"{c3}\"}",
    ),
    get(
        "log after cherry-pick",
        "/repositories/{repo}/refs/main/commits?amount=2",
    ),
    // Reset.
    upload(
        "upload e on dev",
        "/repositories/{repo}/branches/dev/objects?path=data/e.txt",
        b"e",
    ),
    put(
        "reset one object",
        "/repositories/{repo}/branches/dev",
        "{\"type\":\"object\",\"path\":\"data/e.txt\"}",
    ),
    get(
        "diff after object reset",
        "/repositories/{repo}/branches/dev/diff",
    ),
    upload(
        "upload f on dev",
        "/repositories/{repo}/branches/dev/objects?path=data/f.txt",
        b"f",
    ),
    put(
        "reset the branch",
        "/repositories/{repo}/branches/dev",
        "{\"type\":\"reset\"}",
    ),
    get(
        "diff after branch reset",
        "/repositories/{repo}/branches/dev/diff",
    ),
    // Deletes.
    delete(
        "delete object",
        "/repositories/{repo}/branches/dev/objects?path=data/a/1.txt",
    ),
    delete(
        "delete missing object",
        "/repositories/{repo}/branches/dev/objects?path=data/nope",
    ),
    post(
        "delete objects",
        "/repositories/{repo}/branches/dev/objects/delete",
        "{\"paths\":[\"data/a/2.txt\",\"data/nope\"]}",
    ),
    get(
        "diff after deletes",
        "/repositories/{repo}/branches/dev/diff",
    ),
    delete("tag delete", "/repositories/{repo}/tags/v1"),
    get("tag get, deleted", "/repositories/{repo}/tags/v1"),
    delete("branch delete", "/repositories/{repo}/branches/dev"),
    get("branch get, deleted", "/repositories/{repo}/branches/dev"),
    // lakeFS deletes a repository in the background (a GET right after may still find it):
    // only the delete call itself is compared.
    delete("repo delete", "/repositories/{repo}"),
];
