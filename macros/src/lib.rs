//! `#[cacheable]`: the seed's `@Cacheable` decorator for async methods, over
//! `stagehand_core::cache::Cache::get_or_set` (so concurrent callers run the method once).
//!
//! ```ignore
//! use stagehand_core::cache::{Cache, CacheError, cacheable};
//!
//! struct UserService { cache: Cache }
//!
//! impl UserService {
//!     #[cacheable(prefix = "user:profile", ttl = "1h", key = user_id)]
//!     async fn profile(&self, user_id: &str) -> Result<Profile, AppError> {
//!         load_from_the_database(user_id).await
//!     }
//! }
//! ```
//!
//! - `prefix` (required): the key is `PREFIX:KEY`.
//! - `key` (optional): an expression of the arguments, formatted with `Display`; without it
//!   the key is the arguments as a JSON array, as the seed's default (`user:profile:["7"]`).
//! - `ttl` (optional): `"90s"`, `"1h"`, ... or a number of seconds as in the seed; without it
//!   the value does not expire.
//! - `cache` (optional): the expression giving the `Cache`, `self.cache` by default.
//! - `krate` (optional): the path of `stagehand_core` (`stagehand::core` from the service
//!   crate).
//!
//! The method must be `async` and return `Result<T, E>` with `T: Serialize +
//! DeserializeOwned`, `E: From<CacheError>` and `E: Into<Box<dyn Error + Send + Sync>>`. A
//! failure of the method's body reaches the caller as `CacheError::Load`, whose source is the
//! body's error.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, MetaNameValue, Pat, Token, parse_macro_input};

/// Caches an async method's result through `Cache::get_or_set`. See the crate docs.
#[proc_macro_attribute]
pub fn cacheable(attr: TokenStream, item: TokenStream) -> TokenStream {
    let function = parse_macro_input!(item as ItemFn);
    match expand(attr.into(), function) {
        Ok(tokens) => tokens.into(),
        Err(err) => err.to_compile_error().into(),
    }
}

struct Options {
    prefix: String,
    key: Option<Expr>,
    ttl_ms: Option<u64>,
    cache: Option<Expr>,
    krate: Option<syn::Path>,
}

fn options(attr: Tokens) -> syn::Result<Options> {
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
    let mut options = Options {
        prefix: String::new(),
        key: None,
        ttl_ms: None,
        cache: None,
        krate: None,
    };
    let mut has_prefix = false;
    for pair in pairs {
        let name = pair
            .path
            .get_ident()
            .map(|i| i.to_string())
            .unwrap_or_default();
        match name.as_str() {
            "prefix" => {
                options.prefix = string(&pair.value)?;
                has_prefix = true;
            }
            "key" => options.key = Some(pair.value),
            "cache" => options.cache = Some(pair.value),
            "krate" => match pair.value {
                Expr::Path(path) => options.krate = Some(path.path),
                other => return Err(syn::Error::new_spanned(other, "krate is a path")),
            },
            "ttl" => options.ttl_ms = Some(ttl_ms(&pair.value)?),
            _ => {
                return Err(syn::Error::new_spanned(
                    pair.path,
                    "expected prefix, key, ttl, cache or krate",
                ));
            }
        }
    }
    if !has_prefix {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[cacheable] needs a prefix: #[cacheable(prefix = \"user:profile\")]",
        ));
    }
    Ok(options)
}

fn string(expr: &Expr) -> syn::Result<String> {
    match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s.value()),
        other => Err(syn::Error::new_spanned(other, "expected a string")),
    }
}

/// `"1h"` (humantime) or a number of seconds (the seed's unit).
fn ttl_ms(expr: &Expr) -> syn::Result<u64> {
    let ms = match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => humantime::parse_duration(&s.value())
            .map_err(|e| syn::Error::new_spanned(s, format!("ttl: {e}")))?
            .as_millis(),
        Expr::Lit(ExprLit {
            lit: Lit::Int(n), ..
        }) => u128::from(n.base10_parse::<u64>()?) * 1000,
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "ttl is \"90s\", \"1h\", ... or a number of seconds",
            ));
        }
    };
    match u64::try_from(ms) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(syn::Error::new_spanned(expr, "ttl must be above zero")),
    }
}

fn expand(attr: Tokens, mut function: ItemFn) -> syn::Result<Tokens> {
    let options = options(attr)?;
    if function.sig.asyncness.is_none() {
        return Err(syn::Error::new_spanned(
            function.sig.fn_token,
            "#[cacheable] goes on an async fn",
        ));
    }
    let krate = options
        .krate
        .map(|p| quote!(#p))
        .unwrap_or_else(|| quote!(::stagehand_core));
    let cache = options
        .cache
        .map(|c| quote!(#c))
        .unwrap_or_else(|| quote!(self.cache));
    let args: Vec<&syn::Ident> = function
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(ident) => Some(&ident.ident),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    let prefix = options.prefix;
    let key = match options.key {
        Some(expr) => quote!(::std::format!("{}:{}", #prefix, #expr)),
        None => quote!(::std::format!(
            "{}:{}",
            #prefix,
            #krate::cache::__private::serde_json::json!([#(#args),*])
        )),
    };
    let ttl = match options.ttl_ms {
        Some(ms) => quote!(::std::option::Option::Some(::std::time::Duration::from_millis(#ms))),
        None => quote!(::std::option::Option::None),
    };
    let syn::ReturnType::Type(_, output) = &function.sig.output else {
        return Err(syn::Error::new_spanned(
            &function.sig,
            "#[cacheable] needs a method that returns Result<T, E>",
        ));
    };
    let body = &function.block;
    function.block = syn::parse2(quote!({
        let __stagehand_key = #key;
        let __stagehand_cache: &#krate::cache::Cache = &#cache;
        __stagehand_cache
            .get_or_set(&__stagehand_key, #ttl, || async move {
                let __stagehand_result: #output = #body;
                __stagehand_result
            })
            .await
            .map_err(::std::convert::From::from)
    }))?;
    Ok(quote!(#function))
}
