//! Choosing a source at run time from one command-line argument.

use crate::{
    GbfsSource, GbfsTarget, JcDecauxSource, ReplaySource, SimulateConfig, SimulateSource,
    SourceError, SourceOptions, StationSource,
};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use velib_model::Snapshot;

const FORMS: &str = "expected jcdecaux, jcdecaux:<contract>, gbfs:<gbfs.json URL or JCDecaux \
                     contract>[,<more>…], replay:<file>, simulate or simulate:<stations>";

/// Which source to poll, as written in the producer's `--source` argument.
///
/// | argument | source |
/// |---|---|
/// | `jcdecaux` | JCDecaux v1, every contract (needs an API key) |
/// | `jcdecaux:Lyon` | JCDecaux v1, one contract |
/// | `gbfs:lyon` | JCDecaux's keyless GBFS feed for a contract (slug, case-insensitive) |
/// | `gbfs:https://…/gbfs.json` | any GBFS system by its auto-discovery URL |
/// | `gbfs:lyon,nantes,https://…/gbfs.json` | several systems in one snapshot |
/// | `replay:monday.ndjson` | a recording made with `--record` |
/// | `simulate` | the simulated city of [`SourceOptions::simulate`] |
/// | `simulate:1000000` | the same with that many stations (`_` separators allowed) |
///
/// Commas separate GBFS systems, so a comma inside a URL must be written `%2C`.
///
/// ```
/// use velib_source::{SourceOptions, SourceSpec, StationSource};
///
/// let spec: SourceSpec = "simulate:500".parse()?;
/// assert_eq!(spec, SourceSpec::Simulate { stations: Some(500) });
/// assert_eq!(spec.to_string(), "simulate:500");
/// let source = spec.build(&SourceOptions::default())?;
/// assert!(source.describe().contains("500 stations"));
///
/// let gbfs: SourceSpec = "gbfs:lyon,https://gbfs.example.org/gbfs.json".parse()?;
/// assert!(matches!(gbfs, SourceSpec::Gbfs { ref targets } if targets.len() == 2));
/// assert!("ftp:somewhere".parse::<SourceSpec>().is_err());
/// # Ok::<(), velib_source::SourceError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// JCDecaux's v1 API.
    JcDecaux {
        /// One contract (`Lyon`), or every contract when `None`.
        contract: Option<String>,
    },
    /// One or more GBFS systems.
    Gbfs {
        /// The systems, polled together.
        targets: Vec<GbfsTarget>,
    },
    /// A recording.
    Replay {
        /// The NDJSON file.
        path: PathBuf,
    },
    /// The simulated city.
    Simulate {
        /// The station count, overriding [`SourceOptions::simulate`]'s.
        stations: Option<usize>,
    },
}

impl SourceSpec {
    /// The source to use when the user chose none: JCDecaux v1 for every contract when an API
    /// key is configured, else the simulator, so velib runs out of the box without credentials.
    pub fn default_for(options: &SourceOptions) -> SourceSpec {
        if options.jcdecaux_api_key.is_some() {
            SourceSpec::JcDecaux { contract: None }
        } else {
            SourceSpec::Simulate { stations: None }
        }
    }

    /// Builds the source.
    ///
    /// # Errors
    ///
    /// [`SourceError::Config`] for a missing API key, an invalid URL, or a recording that
    /// cannot be opened.
    pub fn build(&self, options: &SourceOptions) -> Result<AnySource, SourceError> {
        Ok(match self {
            SourceSpec::JcDecaux { contract } => {
                AnySource::JcDecaux(JcDecauxSource::new(options, contract.clone())?)
            }
            SourceSpec::Gbfs { targets } => AnySource::Gbfs(GbfsSource::new(options, targets)?),
            SourceSpec::Replay { path } => AnySource::Replay(ReplaySource::new(
                path,
                options.replay_speed,
                options.replay_loop,
            )?),
            SourceSpec::Simulate { stations } => {
                let cfg = SimulateConfig {
                    stations: stations.unwrap_or(options.simulate.stations),
                    ..options.simulate.clone()
                };
                AnySource::Simulate(SimulateSource::new(cfg))
            }
        })
    }
}

impl FromStr for SourceSpec {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a.trim())),
            None => (s, None),
        };
        let bad = |why: &str| SourceError::Config(format!("invalid source {s:?}: {why}; {FORMS}"));
        let required = |arg: Option<&str>, what: &str| match arg {
            Some(a) if !a.is_empty() => Ok(a.to_owned()),
            _ => Err(bad(&format!("{what} is missing after the colon"))),
        };
        match kind.to_ascii_lowercase().as_str() {
            "jcdecaux" => Ok(SourceSpec::JcDecaux {
                contract: match arg {
                    None => None,
                    Some(_) => Some(required(arg, "the contract")?),
                },
            }),
            "gbfs" => {
                let list = required(arg, "the gbfs.json URL or contract")?;
                let targets = list
                    .split(',')
                    .map(|t| t.parse::<GbfsTarget>())
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(SourceSpec::Gbfs { targets })
            }
            "replay" => Ok(SourceSpec::Replay {
                path: PathBuf::from(required(arg, "the recording file")?),
            }),
            "simulate" => Ok(SourceSpec::Simulate {
                stations: match arg {
                    None => None,
                    Some(n) => match n.replace('_', "").parse::<usize>() {
                        Ok(0) | Err(_) => {
                            return Err(bad("the station count must be a positive integer"));
                        }
                        Ok(n) => Some(n),
                    },
                },
            }),
            _ => Err(bad("unknown source kind")),
        }
    }
}

impl fmt::Display for SourceSpec {
    /// The argument that parses back to this spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::JcDecaux { contract: None } => f.write_str("jcdecaux"),
            SourceSpec::JcDecaux { contract: Some(c) } => write!(f, "jcdecaux:{c}"),
            SourceSpec::Gbfs { targets } => {
                f.write_str("gbfs:")?;
                for (i, t) in targets.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{t}")?;
                }
                Ok(())
            }
            SourceSpec::Replay { path } => write!(f, "replay:{}", path.display()),
            SourceSpec::Simulate { stations: None } => f.write_str("simulate"),
            SourceSpec::Simulate { stations: Some(n) } => write!(f, "simulate:{n}"),
        }
    }
}

/// Any of the sources, chosen at run time ([`SourceSpec::build`]); it delegates every
/// [`StationSource`] method to the one inside, so a binary needs no generics.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // One per process: boxing would buy nothing.
pub enum AnySource {
    /// JCDecaux v1.
    JcDecaux(JcDecauxSource),
    /// GBFS.
    Gbfs(GbfsSource),
    /// A recording.
    Replay(ReplaySource),
    /// The simulator.
    Simulate(SimulateSource),
}

impl StationSource for AnySource {
    fn describe(&self) -> String {
        match self {
            AnySource::JcDecaux(s) => s.describe(),
            AnySource::Gbfs(s) => s.describe(),
            AnySource::Replay(s) => s.describe(),
            AnySource::Simulate(s) => s.describe(),
        }
    }

    async fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        match self {
            AnySource::JcDecaux(s) => s.fetch().await,
            AnySource::Gbfs(s) => s.fetch().await,
            AnySource::Replay(s) => s.fetch().await,
            AnySource::Simulate(s) => s.fetch().await,
        }
    }

    fn skipped_records(&self) -> u64 {
        match self {
            AnySource::JcDecaux(s) => s.skipped_records(),
            AnySource::Gbfs(s) => s.skipped_records(),
            AnySource::Replay(s) => s.skipped_records(),
            AnySource::Simulate(s) => s.skipped_records(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        let cases = [
            ("jcdecaux", SourceSpec::JcDecaux { contract: None }),
            (
                "jcdecaux:Lyon",
                SourceSpec::JcDecaux {
                    contract: Some("Lyon".into()),
                },
            ),
            (
                "gbfs:lyon",
                SourceSpec::Gbfs {
                    targets: vec![GbfsTarget::JcDecauxContract("lyon".into())],
                },
            ),
            (
                "gbfs:https://gbfs.example.org/gbfs.json",
                SourceSpec::Gbfs {
                    targets: vec![GbfsTarget::Url("https://gbfs.example.org/gbfs.json".into())],
                },
            ),
            (
                "gbfs:lyon,nantes",
                SourceSpec::Gbfs {
                    targets: vec![
                        GbfsTarget::JcDecauxContract("lyon".into()),
                        GbfsTarget::JcDecauxContract("nantes".into()),
                    ],
                },
            ),
            (
                "replay:/tmp/a:b.ndjson",
                SourceSpec::Replay {
                    path: "/tmp/a:b.ndjson".into(),
                },
            ),
            ("simulate", SourceSpec::Simulate { stations: None }),
            (
                "simulate:1000000",
                SourceSpec::Simulate {
                    stations: Some(1_000_000),
                },
            ),
        ];
        for (text, want) in cases {
            let got: SourceSpec = text.parse().unwrap();
            assert_eq!(got, want, "{text}");
            assert_eq!(
                got.to_string().parse::<SourceSpec>().unwrap(),
                want,
                "{text}"
            );
        }
        assert_eq!(
            " SIMULATE:1_000 ".parse::<SourceSpec>().unwrap(),
            SourceSpec::Simulate {
                stations: Some(1000)
            }
        );
        assert_eq!(
            "gbfs:Lyon".parse::<SourceSpec>().unwrap().to_string(),
            "gbfs:lyon",
            "slugs are lower-cased"
        );
    }

    #[test]
    fn rejects_bad_arguments_with_the_accepted_forms() {
        for text in [
            "",
            "velib",
            "jcdecaux:",
            "gbfs",
            "gbfs:",
            "gbfs:lyon,,nantes",
            "gbfs:ftp://x/y",
            "replay:",
            "simulate:0",
            "simulate:-3",
            "simulate:many",
        ] {
            let err = text.parse::<SourceSpec>().unwrap_err();
            assert_eq!(err.class(), "config", "{text}");
            assert!(err.is_permanent());
        }
        let err = "velib".parse::<SourceSpec>().unwrap_err().to_string();
        assert!(err.contains("simulate:<stations>"), "{err}");
    }

    #[test]
    fn default_depends_on_the_key() {
        let mut o = SourceOptions::default();
        assert_eq!(
            SourceSpec::default_for(&o),
            SourceSpec::Simulate { stations: None }
        );
        o.jcdecaux_api_key = Some("k".into());
        assert_eq!(
            SourceSpec::default_for(&o),
            SourceSpec::JcDecaux { contract: None }
        );
    }
}
