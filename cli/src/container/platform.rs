//! `rbuild run/create --platform`: which platform a container's image is taken for, as
//! Docker 20.10+ decides it. With `--platform` the local image must be of that platform
//! (else it is pulled for it, and a local image of another platform is named in the
//! error); without it, the host's platform is wanted, but a local image of another platform
//! is used with Docker's warning. Another architecture then runs through qemu
//! ([`crate::build::emulation`]). Owns no I/O beyond reading binfmt_misc through that check.

use rbuild_exporter::image::Platform;

/// The platform chosen for a container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The platform to resolve (and pull) the image for.
    pub platform: Platform,
    /// `--platform` was given.
    pub explicit: bool,
    /// Printed before the container runs (the local image is not the host's platform).
    pub warning: Option<String>,
    /// With `--platform`: the platform of a local image of that name that does not match.
    pub local_mismatch: Option<Platform>,
}

/// Decides from `--platform` (`requested`), the host's platform and the platforms of the
/// local images of the name.
pub fn choose(requested: Option<&Platform>, host: &Platform, local: &[Platform]) -> Choice {
    if let Some(wanted) = requested {
        let wanted = wanted.normalized();
        let local_mismatch = if local.iter().any(|p| wanted.matches(p)) {
            None
        } else {
            local.first().map(Platform::normalized)
        };
        return Choice {
            platform: wanted,
            explicit: true,
            warning: None,
            local_mismatch,
        };
    }
    let host = host.normalized();
    match local.first() {
        Some(other) if !local.iter().any(|p| host.matches(p)) => {
            let other = other.normalized();
            Choice {
                warning: Some(format!(
                    "WARNING: The requested image's platform ({other}) does not match the detected host platform ({host}) and no specific platform was requested"
                )),
                platform: other,
                explicit: false,
                local_mismatch: None,
            }
        }
        _ => Choice {
            platform: host,
            explicit: false,
            warning: None,
            local_mismatch: None,
        },
    }
}

/// Docker's error for a local image of another platform than `--platform`'s.
pub fn mismatch_error(image: &str, wanted: &Platform, actual: &Platform) -> String {
    format!(
        "image with reference {image} was found but does not match the specified platform: wanted {wanted}, actual: {actual}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn no_flag_takes_the_host_or_warns_for_a_local_foreign_image() {
        let host = p("linux/amd64");
        let c = choose(None, &host, &[]);
        assert_eq!((c.platform, c.warning), (host.clone(), None));
        let c = choose(None, &host, &[p("linux/amd64")]);
        assert_eq!((c.platform, c.warning), (host.clone(), None));
        let c = choose(None, &host, &[p("linux/aarch64/v8")]);
        assert_eq!(c.platform, p("linux/arm64"));
        let w = c.warning.unwrap();
        assert!(
            w.contains(
                "platform (linux/arm64) does not match the detected host platform (linux/amd64)"
            ),
            "{w}"
        );
        assert!(!c.explicit);
    }

    #[test]
    fn the_flag_wins_and_names_a_mismatching_local_image() {
        let host = p("linux/amd64");
        let c = choose(Some(&p("linux/arm64")), &host, &[p("linux/arm64")]);
        assert_eq!(c.platform, p("linux/arm64"));
        assert!(c.explicit && c.warning.is_none() && c.local_mismatch.is_none());
        let c = choose(Some(&p("linux/amd64")), &host, &[p("linux/arm64")]);
        assert_eq!(c.platform, host);
        assert_eq!(c.local_mismatch, Some(p("linux/arm64")));
        let c = choose(Some(&p("linux/arm64")), &host, &[]);
        assert_eq!(c.local_mismatch, None);
        assert_eq!(
            mismatch_error("app:1", &p("linux/amd64"), &p("linux/arm64")),
            "image with reference app:1 was found but does not match the specified platform: wanted linux/amd64, actual: linux/arm64"
        );
    }
}
