//! `vm-agent-auth`: check one guest-operations login through PAM.
//!
//! ```text
//! printf 'USER\0PASSWORD\0' | vm-agent-auth
//! ```
//!
//! vm-agent (static, without PAM) starts this once per login it has not
//! checked recently and writes the user name and password, each
//! NUL-terminated, to its standard input: never on the command line, where
//! any local user could read it. As vmtoolsd's `Auth_AuthenticateUserPAM`
//! does with service `vmtoolsd`, it runs the `vm-agent` PAM stack
//! (`/etc/pam.d/vm-agent`): authenticate, account management, establish
//! credentials. The answer is the exit status:
//!
//! * 0: the login is valid; the account follows on standard output, one
//!   `key=value` line each: `uid`, `gid`, `groups` (comma-separated ids),
//!   `home`, `shell` (looked up here, with the system's name services, so
//!   that the static agent needs none);
//! * 1: PAM refused it (bad password, unknown user, account refused by the
//!   stack, e.g. `pam_shells` for a user without a login shell);
//! * 2: the helper could not ask (bad input, PAM not usable).
//!
//! A PAM failure is also written as one line on standard error for the
//! agent's log. The helper gains nothing over its caller: it is not setuid,
//! so an unprivileged user who runs it only checks passwords as PAM lets any
//! unprivileged program (`unix_chkpwd`: their own only).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io::Read;
use std::process::ExitCode;

/// The PAM service: `/etc/pam.d/vm-agent`.
const SERVICE: &CStr = c"vm-agent";
/// Longest input taken (user name and password together).
const MAX_INPUT: u64 = 4096;

// Linux-PAM's values (security/_pam_types.h).
const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;
const PAM_ESTABLISH_CRED: c_int = 0x0002;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// What the conversation answers: the user name to echoed prompts, the
/// password to silent ones (as vmtoolsd's `PAM_conv`).
struct Login {
    user: CString,
    password: CString,
}

/// PAM's conversation callback.
///
/// # Safety
/// Called by libpam with `num` messages in `msgs`, `resp` to fill with a
/// `malloc`ed array (libpam frees it and the strings in it), and `data` the
/// `Login` given to `pam_start`, alive for the whole PAM transaction.
unsafe extern "C" fn conversation(
    num: c_int,
    msgs: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    data: *mut c_void,
) -> c_int {
    if num <= 0 || msgs.is_null() || resp.is_null() || data.is_null() {
        return PAM_CONV_ERR;
    }
    let n = num as usize;
    // SAFETY: calloc of n zeroed responses; libpam frees it with free().
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    // SAFETY: `data` is the Login passed to pam_start (see above).
    let login = unsafe { &*data.cast::<Login>() };
    for i in 0..n {
        // Linux-PAM passes an array of pointers to messages.
        // SAFETY: libpam gives `num` valid message pointers.
        let m = unsafe { &**msgs.add(i) };
        let answer = match m.msg_style {
            PAM_PROMPT_ECHO_ON => Some(&login.user),
            PAM_PROMPT_ECHO_OFF => Some(&login.password),
            PAM_TEXT_INFO | PAM_ERROR_MSG => None,
            _ => {
                free_replies(replies, i);
                return PAM_CONV_ERR;
            }
        };
        // SAFETY: i < n, inside the calloc'ed array.
        let r = unsafe { &mut *replies.add(i) };
        r.resp_retcode = PAM_SUCCESS;
        if let Some(s) = answer {
            // SAFETY: strdup of a valid C string; libpam frees it.
            r.resp = unsafe { libc::strdup(s.as_ptr()) };
            if r.resp.is_null() {
                free_replies(replies, i);
                return PAM_BUF_ERR;
            }
        }
    }
    // SAFETY: resp is libpam's out pointer.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Free the first `filled` answers and the array after a failed conversation.
fn free_replies(replies: *mut PamResponse, filled: usize) {
    for i in 0..filled {
        // SAFETY: the first `filled` entries were set by `conversation`;
        // free(NULL) is a no-op.
        unsafe { libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: allocated by calloc in `conversation`.
    unsafe { libc::free(replies.cast()) };
}

/// Read `USER\0PASSWORD\0` from standard input.
fn read_login() -> Result<Login, String> {
    let mut buf = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the login: {e}"))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err("login longer than 4096 bytes".into());
    }
    let mut parts = buf.split(|&b| b == 0);
    let (Some(user), Some(password), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected USER\\0PASSWORD\\0 on standard input".into());
    };
    if user.is_empty() || !rest.is_empty() || parts.next().is_some() {
        return Err("expected USER\\0PASSWORD\\0 on standard input".into());
    }
    // vmtoolsd refuses names and passwords that are not UTF-8.
    if std::str::from_utf8(user).is_err() || std::str::from_utf8(password).is_err() {
        return Err("user name or password is not UTF-8".into());
    }
    Ok(Login {
        user: CString::new(user).map_err(|e| e.to_string())?,
        password: CString::new(password).map_err(|e| e.to_string())?,
    })
}

fn strerror(pamh: *mut PamHandle, err: c_int) -> String {
    // SAFETY: pam_strerror returns a static string for any code.
    let s = unsafe { pam_strerror(pamh, err) };
    if s.is_null() {
        return format!("PAM error {err}");
    }
    // SAFETY: a NUL-terminated string owned by libpam.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}

/// Run the PAM stack; `Err` says which step refused and why.
fn check(login: &mut Login) -> Result<(), String> {
    let conv = PamConv {
        conv: conversation,
        appdata_ptr: (login as *mut Login).cast(),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: valid C strings and conversation; `login` and `conv` outlive
    // the transaction, which ends with pam_end below.
    let err = unsafe { pam_start(SERVICE.as_ptr(), login.user.as_ptr(), &conv, &mut pamh) };
    if err != PAM_SUCCESS {
        return Err(format!("cannot start PAM: {}", strerror(pamh, err)));
    }
    let steps: [(
        &str,
        unsafe extern "C" fn(*mut PamHandle, c_int) -> c_int,
        c_int,
    ); 3] = [
        ("authentication", pam_authenticate, 0),
        ("account", pam_acct_mgmt, 0),
        ("credentials", pam_setcred, PAM_ESTABLISH_CRED),
    ];
    for (what, step, flags) in steps {
        // SAFETY: pamh is the live handle from pam_start.
        let err = unsafe { step(pamh, flags) };
        if err != PAM_SUCCESS {
            let why = strerror(pamh, err);
            // SAFETY: ends the transaction started above.
            unsafe { pam_end(pamh, err) };
            return Err(format!("{what}: {why}"));
        }
    }
    // SAFETY: ends the transaction started above.
    unsafe { pam_end(pamh, PAM_SUCCESS) };
    Ok(())
}

/// The account of `user` as `key=value` lines (see the module doc).
fn account(user: &CStr) -> Result<String, String> {
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwnam_r.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as c_char; 16384];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid name, out structs and a buffer of the given length.
    let err = unsafe {
        libc::getpwnam_r(
            user.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if err != 0 || found.is_null() {
        return Err("account: no such user after PAM accepted it".into());
    }
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as c_int;
        // SAFETY: `groups` holds `n` entries; getgrouplist sets n to the count.
        let r =
            unsafe { libc::getgrouplist(user.as_ptr(), pw.pw_gid, groups.as_mut_ptr(), &mut n) };
        if r >= 0 {
            groups.truncate(n.max(0) as usize);
            break;
        }
        if groups.len() >= 65536 {
            return Err("account: too many groups".into());
        }
        let want = (n.max(0) as usize).max(groups.len() * 2);
        groups.resize(want, 0);
    }
    // SAFETY: getpwnam_r filled these with NUL-terminated strings in `buf`.
    let (home, shell) = unsafe { (CStr::from_ptr(pw.pw_dir), CStr::from_ptr(pw.pw_shell)) };
    let list: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    Ok(format!(
        "uid={}\ngid={}\ngroups={}\nhome={}\nshell={}\n",
        pw.pw_uid,
        pw.pw_gid,
        list.join(","),
        home.to_string_lossy(),
        shell.to_string_lossy()
    ))
}

fn main() -> ExitCode {
    if std::env::args_os().len() > 1 {
        eprintln!("usage: printf 'USER\\0PASSWORD\\0' | vm-agent-auth");
        return ExitCode::from(2);
    }
    let mut login = match read_login() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vm-agent-auth: {e}");
            return ExitCode::from(2);
        }
    };
    let user = login.user.to_string_lossy().into_owned();
    match check(&mut login).and_then(|()| account(&login.user)) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vm-agent-auth: {user}: {e}");
            ExitCode::from(1)
        }
    }
}
