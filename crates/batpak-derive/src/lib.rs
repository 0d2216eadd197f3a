//! `#[derive(EventPayload)]`: binds a payload type to its event kind at compile time.
//!
//! ```ignore
//! #[derive(Serialize, Deserialize, EventPayload)]
//! #[batpak(category = 1, type_id = 7)]            // version = 1 by default
//! // or: #[batpak(category = 1, type_id = 7, version = 3, upcast = Self::upcast)]
//! // the kind's name is the type's name, or #[batpak(..., name = "shop.OrderPlaced")]
//! struct OrderPlaced { sku: String, qty: u32 }
//! ```
//!
//! Every rule the kind must follow is checked here, so a mistake is a compile error
//! that points at the attribute: category 0 is reserved for the store, categories stop
//! at 15, type ids at 4095, versions start at 1.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Error, LitInt};

const MAX_CATEGORY: u64 = 15;
const MAX_TYPE_ID: u64 = 4095;

/// Derives `batpak::EventPayload` from `#[batpak(category = C, type_id = T, version = V)]`.
#[proc_macro_derive(EventPayload, attributes(batpak))]
pub fn derive_event_payload(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

struct KindAttr {
    category: Option<(u64, Span)>,
    type_id: Option<(u64, Span)>,
    version: Option<(u64, Span)>,
    upcast: Option<syn::Path>,
    name: Option<syn::LitStr>,
}

/// Longest kind name the store records (bytes).
const MAX_NAME_LEN: usize = 128;

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    if let Data::Union(u) = &input.data {
        return Err(Error::new(
            u.union_token.span(),
            "EventPayload cannot be derived for a union: use a struct or an enum",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "EventPayload cannot be derived for a generic type: every instantiation would share one event kind",
        ));
    }
    let attr = parse_attr(input)?;
    let (category, category_span) = attr.category.ok_or_else(|| {
        Error::new(
            input.ident.span(),
            "missing `category`: add #[batpak(category = 1..=15, type_id = 0..=4095)]",
        )
    })?;
    let (type_id, type_span) = attr.type_id.ok_or_else(|| {
        Error::new(
            input.ident.span(),
            "missing `type_id`: add #[batpak(category = 1..=15, type_id = 0..=4095)]",
        )
    })?;
    if category == 0 {
        return Err(Error::new(
            category_span,
            "category 0 is reserved for the store's own events: use 1..=15",
        ));
    }
    if category > MAX_CATEGORY {
        return Err(Error::new(
            category_span,
            format!("category {category} is out of range: categories are 1..=15 (4 bits)"),
        ));
    }
    if type_id > MAX_TYPE_ID {
        return Err(Error::new(
            type_span,
            format!("type_id {type_id} is out of range: type ids are 0..=4095 (12 bits)"),
        ));
    }
    let version = match attr.version {
        None => 1,
        Some((0, span)) => {
            return Err(Error::new(
                span,
                "version 0 is not allowed: versions start at 1",
            ))
        }
        Some((v, span)) if v > u64::from(u16::MAX) => {
            return Err(Error::new(
                span,
                format!("version {v} does not fit in 16 bits"),
            ))
        }
        Some((v, _)) => v,
    };
    let kind_name = match &attr.name {
        None => input.ident.to_string(),
        Some(lit) => {
            let value = lit.value();
            if value.is_empty() || value.len() > MAX_NAME_LEN {
                return Err(Error::new(
                    lit.span(),
                    format!("a kind name is 1..={MAX_NAME_LEN} bytes"),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(Error::new(
                    lit.span(),
                    "a kind name holds no control characters",
                ));
            }
            value
        }
    };
    let name = &input.ident;
    let category = category as u8;
    let type_id = type_id as u16;
    let version = version as u16;
    let upcast = attr.upcast.map(|path| {
        quote! {
            fn upcast(
                from: u16,
                value: ::batpak::PayloadValue,
            ) -> ::core::result::Result<::batpak::PayloadValue, ::std::string::String> {
                #path(from, value)
            }
        }
    });
    Ok(quote! {
        impl ::batpak::EventPayload for #name {
            const KIND: ::batpak::EventKind = ::batpak::EventKind::custom(#category, #type_id);
            const SCHEMA_VERSION: u16 = #version;
            const NAME: &'static str = #kind_name;
            #upcast
        }
        ::batpak::__private::inventory::submit! {
            ::batpak::__private::KindRegistration {
                kind: ::batpak::EventKind::custom(#category, #type_id),
                type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#name)),
                name: #kind_name,
            }
        }
    })
}

fn parse_attr(input: &DeriveInput) -> syn::Result<KindAttr> {
    let mut out = KindAttr {
        category: None,
        type_id: None,
        version: None,
        upcast: None,
        name: None,
    };
    let mut seen = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("batpak")) {
        seen = true;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("upcast") {
                if out.upcast.is_some() {
                    return Err(meta.error("this batpak attribute is given twice"));
                }
                out.upcast = Some(meta.value()?.parse()?);
                return Ok(());
            }
            if meta.path.is_ident("name") {
                if out.name.is_some() {
                    return Err(meta.error("this batpak attribute is given twice"));
                }
                out.name = Some(meta.value()?.parse()?);
                return Ok(());
            }
            let slot = if meta.path.is_ident("category") {
                &mut out.category
            } else if meta.path.is_ident("type_id") {
                &mut out.type_id
            } else if meta.path.is_ident("version") {
                &mut out.version
            } else {
                return Err(meta.error(
                    "unknown batpak attribute: expected `category`, `type_id`, `version`, `name` or `upcast`",
                ));
            };
            if slot.is_some() {
                return Err(meta.error("this batpak attribute is given twice"));
            }
            let lit: LitInt = meta.value()?.parse()?;
            let value = lit.base10_parse::<u64>()?;
            *slot = Some((value, lit.span()));
            Ok(())
        })?;
    }
    if !seen {
        return Err(Error::new(
            input.ident.span(),
            "missing #[batpak(category = C, type_id = T)] attribute: it binds the type to its event kind",
        ));
    }
    Ok(out)
}

/// Derives `batpak::Projection` from handler methods:
///
/// ```ignore
/// #[derive(Clone, Default, EventSourced)]
/// #[batpak(name = "balance", version = 2, events(Deposited => on_deposit, Withdrawn => on_withdraw))]
/// struct Balance { cents: i64 }
///
/// impl Balance {
///     fn on_deposit(&mut self, e: &Deposited) { self.cents += e.cents }
///     fn on_withdraw(&mut self, e: &Withdrawn) { self.cents -= e.cents }
/// }
/// ```
///
/// The listed payload types are the projection's kinds; each stored event of one of
/// them is decoded (with upcasting) and handed to its method. `version` defaults to 1.
///
/// A redacted event (its payload erased) cannot be decoded: it is skipped, or handed
/// as a `&EventView` to the method named by `redacted = method` when there is one.
#[proc_macro_derive(EventSourced, attributes(batpak))]
pub fn derive_event_sourced(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand_event_sourced(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand_event_sourced(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(Error::new(
            input.generics.span(),
            "EventSourced cannot be derived for a generic type",
        ));
    }
    let mut name: Option<syn::LitStr> = None;
    let mut version: Option<(u64, Span)> = None;
    let mut handlers: Vec<(syn::Path, syn::Ident)> = Vec::new();
    let mut on_redacted: Option<syn::Ident> = None;
    let mut seen = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("batpak")) {
        seen = true;
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("version") {
                let lit: LitInt = meta.value()?.parse()?;
                version = Some((lit.base10_parse::<u64>()?, lit.span()));
                Ok(())
            } else if meta.path.is_ident("redacted") {
                on_redacted = Some(meta.value()?.parse()?);
                Ok(())
            } else if meta.path.is_ident("events") {
                let content;
                syn::parenthesized!(content in meta.input);
                while !content.is_empty() {
                    let ty: syn::Path = content.parse()?;
                    content.parse::<syn::Token![=>]>()?;
                    let method: syn::Ident = content.parse()?;
                    handlers.push((ty, method));
                    if content.is_empty() {
                        break;
                    }
                    content.parse::<syn::Token![,]>()?;
                }
                Ok(())
            } else {
                Err(meta.error(
                    "unknown batpak attribute for EventSourced: expected `name`, `version`, `events` or `redacted`",
                ))
            }
        })?;
    }
    let ident = &input.ident;
    if !seen || handlers.is_empty() {
        return Err(Error::new(
            ident.span(),
            "missing #[batpak(events(Payload => handler, ...))]: list the payload types this projection folds",
        ));
    }
    let version = match version {
        None => 1u32,
        Some((0, span)) => {
            return Err(Error::new(
                span,
                "version 0 is not allowed: versions start at 1",
            ))
        }
        Some((v, span)) => u32::try_from(v)
            .map_err(|_| Error::new(span, format!("version {v} does not fit in 32 bits")))?,
    };
    let name = name.map_or_else(|| ident.to_string(), |n| n.value());
    let kinds = handlers.iter().map(|(ty, _)| {
        quote! { <#ty as ::batpak::EventPayload>::KIND }
    });
    let redacted = match &on_redacted {
        Some(method) => quote! { self.#method(event); },
        None => quote! {},
    };
    let arms = handlers.iter().map(|(ty, method)| {
        quote! {
            if event.kind() == <#ty as ::batpak::EventPayload>::KIND {
                self.#method(&event.decode::<#ty>()?);
                return ::core::result::Result::Ok(());
            }
        }
    });
    Ok(quote! {
        impl ::batpak::Projection for #ident {
            const NAME: &'static str = #name;
            const VERSION: u32 = #version;
            const KINDS: &'static [::batpak::EventKind] = &[#(#kinds),*];

            fn apply(&mut self, event: &::batpak::EventView<'_>) -> ::batpak::Result<()> {
                if event.is_redacted() {
                    #redacted
                    return ::core::result::Result::Ok(());
                }
                #(#arms)*
                ::core::result::Result::Ok(())
            }
        }
    })
}
