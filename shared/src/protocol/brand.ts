/** A nominal type: a `T` that only the constructor of `B` may produce. */
export type Brand<T, B extends string> = T & { readonly __brand: B };
