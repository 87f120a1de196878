//! The rules for what people are called and how they look: usernames, nicknames, signs and
//! profile photos. Every path that sets one (sign-up, profile edit, the admin pages, GitHub
//! sign-up, the operators' CLI) goes through here, so there is one set of rules.
//!
//! A name must look like what it is: `USER`, ` user`, `us\u{200b}er`, `ｕｓｅｒ` or `аdmin` (with
//! a Cyrillic `а`) must not pass for `user` or `admin`. So usernames are NFKC-normalised
//! (full-width and other compatibility forms become plain letters), trimmed, unique without
//! regard to case, and may not mix Latin with Cyrillic or Greek letters; and no name or sign may
//! hold control characters, invisible ones (zero-width, fillers) or bidi controls, which can make
//! text show other than it is (`abc\u{202e}dcba`).

use unicode_normalization::UnicodeNormalization;

use super::DomainError;
use super::accounts::BAD_PARAMS;
use crate::store::{self, DbConn};

pub const USERNAME_MIN: usize = 4;
/// Long enough for any real name, short enough to index.
pub const USERNAME_MAX: usize = 64;
pub const NICKNAME_MAX: usize = 32;
pub const SIGN_MAX: usize = 100;
const PHOTO_MAX: usize = 1024;

pub const BAD_NICKNAME_LENGTH: &str = "昵称应为1到32个字符";
pub const BAD_NICKNAME: &str = "昵称含有不允许的字符";
pub const BAD_SIGN_LENGTH: &str = "签名最多100个字符";
pub const BAD_SIGN: &str = "签名含有不允许的字符";
pub const BAD_PHOTO: &str = "头像地址不合法";

/// Characters that show as nothing, or change how the text around them shows.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                  // soft hyphen
        | '\u{034F}'                // combining grapheme joiner
        | '\u{061C}'                // Arabic letter mark (bidi)
        | '\u{115F}' | '\u{1160}'   // Hangul fillers
        | '\u{17B4}' | '\u{17B5}'   // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'   // Mongolian variation selectors and vowel separator
        | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
        | '\u{2028}'..='\u{202E}'   // line and paragraph separators; bidi embeddings, overrides
        | '\u{2060}'..='\u{206F}'   // word joiner, invisible operators, bidi isolates
        | '\u{3164}'                // Hangul filler
        | '\u{FE00}'..='\u{FE0F}'   // variation selectors
        | '\u{FEFF}'                // zero-width no-break space
        | '\u{FFA0}'                // half-width Hangul filler
        | '\u{FFF0}'..='\u{FFFB}'   // specials, interlinear annotation
        | '\u{E0000}'..='\u{E007F}' // tags
        | '\u{E0100}'..='\u{E01EF}' // variation selectors supplement
    ) || c.is_control()
}

/// Emoji are built with the zero-width joiner (👨‍👩‍👧) and variation selectors (❤️): in a
/// nickname or a sign they may follow a pictograph, and nothing else.
fn is_pictograph(c: char) -> bool {
    matches!(c, '\u{2190}'..='\u{2BFF}' | '\u{1F000}'..='\u{1FAFF}' | '\u{3030}' | '\u{303D}')
}

/// Whether `text` shows as it is: no control, invisible or bidi character, except the joiners
/// and selectors of an emoji when `emoji` is true.
fn shows_as_it_is(text: &str, emoji: bool) -> bool {
    let mut previous: Option<char> = None;
    for c in text.chars() {
        let joins_emoji = emoji
            && matches!(c, '\u{200D}' | '\u{FE0E}' | '\u{FE0F}')
            && previous.is_some_and(is_pictograph);
        if is_invisible(c) && !joins_emoji {
            return false;
        }
        // A joiner is followed by the next pictograph; a selector ends the emoji.
        previous = match c {
            '\u{200D}' => previous,
            '\u{FE0E}' | '\u{FE0F}' => Some('\u{1F000}'),
            other => Some(other),
        };
    }
    true
}

#[derive(PartialEq)]
enum Script {
    Latin,
    Greek,
    Cyrillic,
    Other,
}

fn script(c: char) -> Script {
    match c {
        'a'..='z' | 'A'..='Z' | '\u{00C0}'..='\u{024F}' => Script::Latin,
        '\u{0370}'..='\u{03FF}' | '\u{1F00}'..='\u{1FFF}' => Script::Greek,
        '\u{0400}'..='\u{052F}' => Script::Cyrillic,
        _ => Script::Other,
    }
}

/// Whether a name mixes Latin, Greek and Cyrillic letters: those share look-alikes (`а`/`a`,
/// `о`/`o`, `ο`/`o`), and no real name needs two of them.
fn mixes_alphabets(name: &str) -> bool {
    let mut seen: Option<Script> = None;
    for script in name.chars().map(script).filter(|s| *s != Script::Other) {
        match &seen {
            None => seen = Some(script),
            Some(first) if *first != script => return true,
            Some(_) => {}
        }
    }
    false
}

/// A username as stored: NFKC-normalised, trimmed, 4 to 64 characters, with no control,
/// invisible or whitespace character other than the plain space, and not mixing alphabets.
pub fn username(raw: &str) -> Result<String, DomainError> {
    let name: String = raw.nfkc().collect::<String>().trim().to_owned();
    let length = name.chars().count();
    let valid = (USERNAME_MIN..=USERNAME_MAX).contains(&length)
        && shows_as_it_is(&name, false)
        && !name.chars().any(|c| c.is_whitespace() && c != ' ')
        && !mixes_alphabets(&name);
    if !valid {
        return Err(DomainError::invalid(BAD_PARAMS));
    }
    Ok(name)
}

/// What makes two usernames the same: NFKC, trimmed, lower case. Unique in the database.
pub fn username_key(name: &str) -> String {
    name.nfkc().collect::<String>().trim().to_lowercase()
}

/// A nickname as stored: trimmed, 1 to 32 characters that show as they are (emoji allowed).
pub fn nickname(raw: &str) -> Result<String, DomainError> {
    let nickname = raw.trim();
    let length = nickname.chars().count();
    if length == 0 || length > NICKNAME_MAX {
        return Err(DomainError::invalid(BAD_NICKNAME_LENGTH));
    }
    if !shows_as_it_is(nickname, true) {
        return Err(DomainError::invalid(BAD_NICKNAME));
    }
    Ok(nickname.to_owned())
}

/// The nickname a new account starts with: its (valid) username, cut to a nickname's length.
pub fn default_nickname(username: &str) -> String {
    username
        .chars()
        .take(NICKNAME_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A nickname made from untrusted text (a GitHub display name): what cannot show is dropped,
/// the rest cut to length; `None` if nothing is left.
pub fn nickname_from(text: &str) -> Option<String> {
    let kept: String = text
        .chars()
        .filter(|c| !is_invisible(*c))
        .collect::<String>()
        .trim()
        .chars()
        .take(NICKNAME_MAX)
        .collect();
    nickname(&kept).ok()
}

/// A sign (the profile's one-line motto): up to 100 characters that show as they are.
pub fn sign(raw: &str) -> Result<String, DomainError> {
    if raw.chars().count() > SIGN_MAX {
        return Err(DomainError::invalid(BAD_SIGN_LENGTH));
    }
    if !shows_as_it_is(raw, true) {
        return Err(DomainError::invalid(BAD_SIGN));
    }
    Ok(raw.to_owned())
}

/// A default avatar, `/public/images/head1.png` .. `head9.png`.
pub fn is_default_photo(photo: &str) -> bool {
    (1..=9).any(|n| photo == format!("/public/images/head{n}.png"))
}

/// GitHub's avatar of account `github_id`: `https://avatars.githubusercontent.com/u/<id>`,
/// with GitHub's optional `?v=<n>`.
pub fn is_github_avatar(photo: &str, github_id: i64) -> bool {
    let Some(rest) = photo.strip_prefix("https://avatars.githubusercontent.com/u/") else {
        return false;
    };
    let (id, query) = rest.split_once('?').unwrap_or((rest, ""));
    let version_ok = query.is_empty()
        || query
            .strip_prefix("v=")
            .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
    id == github_id.to_string() && version_ok
}

/// Whether `photo` may be the profile photo of user `owner`, set by user `actor` (the owner, or
/// an admin): a default avatar, a file the owner or the actor uploaded, or the owner's GitHub
/// avatar. Anything else (another site's picture, which every viewer's browser would fetch; a
/// stranger's upload) is refused.
pub async fn check_photo(
    conn: &mut DbConn,
    photo: &str,
    owner: Option<i32>,
    actor: i32,
) -> Result<(), DomainError> {
    let refused = || DomainError::invalid(BAD_PHOTO);
    if photo.len() > PHOTO_MAX {
        return Err(refused());
    }
    if is_default_photo(photo) {
        return Ok(());
    }
    if photo.starts_with(super::uploads::UPLOAD_URL_PREFIX) {
        let uploader = store::uploads::uploader(conn, photo).await?;
        return match uploader {
            Some(uploader) if uploader == actor || Some(uploader) == owner => Ok(()),
            _ => Err(refused()),
        };
    }
    if let Some(owner) = owner
        && let Some(github_id) = store::github::github_id_of(conn, owner).await?
        && is_github_avatar(photo, github_id)
    {
        return Ok(());
    }
    Err(refused())
}

/// Gives every user without a username key one, at start: accounts made before keys existed
/// (or by an older process). Where two old names share a key (`User` and `user`), the older
/// account gets it and the other keeps none: it logs in by its exact name, and no new account
/// can take the key. Returns (keys set, names left without one).
pub async fn backfill_username_keys(conn: &mut DbConn) -> Result<(usize, usize), DomainError> {
    conn.transaction(|tx| {
        Box::pin(async move {
            let rows = store::accounts::usernames_and_keys(tx).await?;
            let mut taken: std::collections::HashSet<String> =
                rows.iter().filter_map(|(_, _, key)| key.clone()).collect();
            let (mut set, mut left) = (0, 0);
            for (id, name, key) in rows {
                if key.is_some() {
                    continue;
                }
                let key = username_key(&name);
                if taken.insert(key.clone()) {
                    store::accounts::set_username_key(tx, id, &key).await?;
                    set += 1;
                } else {
                    tracing::warn!(
                        user_id = id,
                        "username differs from an older one only in case or width; it logs in by its exact spelling"
                    );
                    left += 1;
                }
            }
            Ok::<_, DomainError>((set, left))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_usernames_are_refused_or_made_the_same() {
        for bad in [
            "us\u{200b}er",
            "abc\u{202e}dcba",
            "\u{0430}dmin",
            "ab\ncd",
            "usr",
        ] {
            assert!(username(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(username("  user ").unwrap(), "user");
        assert_eq!(username("ｕｓｅｒ").unwrap(), "user");
        assert_eq!(username_key("USER"), username_key("ｕｓｅｒ"));
        assert_eq!(username("张三abc").unwrap(), "张三abc");
        assert_eq!(username("Жанна").unwrap(), "Жанна");
    }

    #[test]
    fn nicknames_and_signs_keep_emoji_but_not_hidden_characters() {
        assert!(nickname("家庭👨\u{200d}👩\u{200d}👧").is_ok());
        assert!(nickname("❤\u{fe0f}").is_ok());
        assert!(nickname("ad\u{200d}min").is_err());
        assert!(nickname("abc\u{202e}dcba").is_err());
        assert!(sign("line\nbreak").is_err());
        assert_eq!(
            nickname_from(" The\u{200b} Octocat ").as_deref(),
            Some("The Octocat")
        );
    }

    #[test]
    fn github_avatars_only_of_the_account() {
        assert!(is_github_avatar(
            "https://avatars.githubusercontent.com/u/583231?v=4",
            583231
        ));
        assert!(is_github_avatar(
            "https://avatars.githubusercontent.com/u/583231",
            583231
        ));
        assert!(!is_github_avatar(
            "https://avatars.githubusercontent.com/u/583231?v=4",
            1
        ));
        assert!(!is_github_avatar(
            "https://avatars.githubusercontent.com/u/1?x=https://evil",
            1
        ));
    }
}
